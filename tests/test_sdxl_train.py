"""`animatediff train` over an SDXL base (a tiny random one): a motion module and a MotionLoRA train with both text
encoders, the pooled captions and the size ids; the base stays bit for bit; the export animates the SDXL base."""

from __future__ import annotations

import pytest
import torch

from animatediff.errors import InputError
from animatediff.formats.motion_module_files import save_motion_modules
from animatediff.pipeline import AnimationPipeline
from animatediff.train.trainer import Trainer
from tests.sdxl_tiny import tiny_sdxl_folder, tiny_sdxl_motion
from tests.test_train_synthetic import fresh_accelerate_state, train_config  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory):
    return tiny_sdxl_folder(tmp_path_factory.mktemp("sdxl") / "base")


def snapshot(trainer: Trainer) -> dict[str, dict[str, torch.Tensor]]:
    parts = {"unet": trainer.unet.unet, "vae": trainer.vae, "text_encoder": trainer.text_encoder}
    parts["text_encoder_2"] = trainer.text_encoder_2
    return {name: {k: v.detach().clone() for k, v in part.state_dict().items()} for name, part in parts.items()}


def test_motion_module_trains_over_sdxl_and_its_export_animates_it(sdxl_folder, tmp_path):
    trainer = Trainer(train_config(sdxl_folder, tmp_path / "run", optim={"max_steps": 2}))
    config = trainer.unet.motion_modules.config
    assert trainer.captions.sdxl and config.block_out_channels == (32, 64, 64) and config.norm_over_frames
    frozen, motion = snapshot(trainer), {k: v.clone() for k, v in trainer.unet.motion_modules.state_dict().items()}
    seen = {}
    unet_forward = trainer.unet.unet.forward

    def spy(*args, **kwargs):
        seen.update(kwargs.get("added_cond_kwargs") or {})
        return unet_forward(*args, **kwargs)

    trainer.unet.unet.forward = spy
    result = trainer.train()
    assert seen["time_ids"][0].tolist() == [16.0, 16.0, 0.0, 0.0, 16.0, 16.0]  # the clips' own size, uncropped
    assert seen["text_embeds"].shape == (2 * 4, 32)  # pooled captions, one per frame of the batch's 2 clips
    for name, before in snapshot(trainer).items():
        assert all(torch.equal(frozen[name][k], v) for k, v in before.items()), f"{name} changed"
    after = trainer.unet.motion_modules.state_dict()
    assert all(not torch.equal(motion[k], after[k]) for k in motion)

    exported = result["checkpoint"] / "motion_module.safetensors"
    pipe = AnimationPipeline.from_pretrained(sdxl_folder, exported)
    frames = pipe("a red square moving right", num_frames=4, num_inference_steps=2, seed=0, progress=False)
    assert frames.shape == (1, 4, 16, 16, 3)


def test_motion_lora_trains_over_sdxl(sdxl_folder, tmp_path):
    init = save_motion_modules(tiny_sdxl_motion(), tmp_path / "mm_sdxl.safetensors")
    config = train_config(
        sdxl_folder, tmp_path / "run", optim={"max_steps": 2}, model={"init_motion_module": str(init)},
        lora={"enabled": True, "rank": 4},
    )  # fmt: skip
    trainer = Trainer(config)
    modules = {k: v.clone() for k, v in trainer.unet.motion_modules.state_dict().items() if "lora" not in k}
    trainer.train()
    after = trainer.unet.motion_modules.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in modules.items())  # the module itself stays frozen
    assert any("lora" in k for k in after)


def test_control_training_over_sdxl_is_refused_in_one_line(sdxl_folder, tmp_path):
    init = save_motion_modules(tiny_sdxl_motion(), tmp_path / "mm_sdxl.safetensors")
    config = train_config(
        sdxl_folder, tmp_path / "run", controlnet={"enabled": True}, model={"init_motion_module": str(init)}
    )
    with pytest.raises(InputError, match="take an SD1.x base, not SDXL"):
        Trainer(config)
