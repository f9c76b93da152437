import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline

from animatediff.base_model import load_base
from animatediff.models import MotionModules
from animatediff.pipeline import AnimationPipeline
from animatediff.world.base_model import (
    BaseModelConfig,
    build_text_encoder,
    build_unet,
    build_vae,
    motion_module_config,
    save_base_folder,
)
from animatediff.world.datasets import WorldVideos
from animatediff.world.tokenizer import world_tokenizer

TINY = BaseModelConfig(
    resolution=16, vae_channels=(32, 32), unet_channels=(32, 64), unet_attention=(False, True), text_width=32
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("world_base")
    tokenizer = world_tokenizer(root / "tokenizer_src")
    parts = dict(
        tokenizer=tokenizer,
        text_encoder=build_text_encoder(tokenizer, TINY),
        vae=build_vae(TINY),
        unet=build_unet(TINY),
    )
    return save_base_folder(root / "base", **parts), parts


def test_folder_has_the_sd15_layout(world_folder):
    folder, _ = world_folder
    for path in (
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "tokenizer/tokenizer_config.json",
        "scheduler/scheduler_config.json",
    ):
        assert (folder / path).is_file(), path
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    scheduler = json.loads((folder / "scheduler/scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DDIMScheduler"
    assert (scheduler["beta_schedule"], scheduler["beta_start"], scheduler["beta_end"]) == ("linear", 0.00085, 0.012)
    assert scheduler["steps_offset"] == 1 and scheduler["clip_sample"] is False


def test_loads_through_the_projects_path(world_folder):
    folder, parts = world_folder
    base = load_base(folder)
    for name in ("unet", "vae", "text_encoder"):
        saved, loaded = parts[name].state_dict(), getattr(base, name).state_dict()
        assert saved.keys() == loaded.keys()
        for key in saved:
            torch.testing.assert_close(loaded[key], saved[key])
    assert base.tokenizer("a red star").input_ids == parts["tokenizer"]("a red star").input_ids


def test_loads_and_samples_through_diffusers(world_folder):
    folder, _ = world_folder
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    assert isinstance(pipe.scheduler, DDIMScheduler) and pipe.vae_scale_factor == 2
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red circle on a blue background", height=16, width=16, num_inference_steps=2, output_type="np")
    assert out.images.shape == (1, 16, 16, 3) and np.isfinite(out.images).all()


def test_project_motion_modules_fit_the_world_unet(world_folder):
    folder, _ = world_folder
    modules = MotionModules(motion_module_config(TINY))
    pipe = AnimationPipeline.from_pretrained(folder, modules)
    frames = pipe("a red circle moving left on a black background", num_frames=4, num_inference_steps=2, progress=False)
    assert frames.shape == (1, 4, 16, 16, 3)


def test_the_trainer_trains_motion_modules_on_world_videos_over_the_world_base(world_folder, tmp_path):
    from torch.utils.data import DataLoader

    from animatediff.train.trainer import Trainer
    from tests.test_train_synthetic import train_config

    trainer = Trainer(train_config(world_folder[0], tmp_path / "run", data={"num_frames": 4, "resolution": 16}))
    batch = next(iter(DataLoader(WorldVideos(2, frames=4, resolution=16), batch_size=2)))
    loss = trainer.loss_and_backward(batch)
    assert torch.isfinite(loss)
    grads = [p.grad for p in trainer.trainable if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_default_sizes_are_the_shipped_builds():
    cfg = BaseModelConfig()
    assert cfg.vae_factor == 4 and cfg.latent_size == 8
    vae = build_vae(cfg)
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mean
    assert latents.shape == (1, 4, 8, 8)
    unet = build_unet(cfg)
    assert tuple(unet.config.block_out_channels) == (64, 128) and unet.config.cross_attention_dim == 64
    assert unet.config.down_block_types == ("CrossAttnDownBlock2D", "DownBlock2D")  # SD's placement
    MotionModules(motion_module_config(cfg))  # 32 norm groups and 8 heads fit every level


def test_attention_goes_where_the_config_puts_it():
    cfg = BaseModelConfig(vae_channels=(32, 64), unet_channels=(32, 64, 128), unet_attention=(False, True, False))
    assert cfg.latent_size == 16
    unet = build_unet(cfg)
    assert unet.config.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    assert unet.config.up_block_types == ("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    MotionModules(motion_module_config(cfg))


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="multiples of norm_groups"):
        BaseModelConfig(unet_channels=(48, 96))
    with pytest.raises(ValueError, match="resolution 30"):
        BaseModelConfig(resolution=30)
    with pytest.raises(ValueError, match="one flag per UNet block"):
        BaseModelConfig(unet_attention=(True, False, True))
