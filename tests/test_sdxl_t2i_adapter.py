"""A T2I-Adapter on an SDXL base (`full_adapter_xl`: its last feature joins the middle block). diffusers has no
AnimateDiff adapter pipeline, so the reference is its `StableDiffusionXLAdapterPipeline` frame by frame: with motion
modules as freshly made (they add nothing), our clip is a batch of independent SDXL images, each frame its own start
noise and control image. Also: the families refused both ways, and the CLI with an adapter folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLAdapterPipeline, T2IAdapter

from animatediff.errors import InputError
from animatediff.models import MotionModuleConfig, MotionModules
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.controlnet import ControlNet
from animatediff.pipeline.t2i_adapter import check_t2i_adapter
from tests.sdxl_tiny import SDXL_CHANNELS, tiny_sdxl_folder

FRAMES, SIZE = 3, 32
ARGS = dict(prompt="a red circle moving left", height=SIZE, width=SIZE, num_inference_steps=3, guidance_scale=6.0)


def xl_adapter(vae_scale_factor: int, seed: int = 3) -> T2IAdapter:
    """A random SDXL adapter for the tiny SDXL: a feature per down block and one for the middle block."""
    torch.manual_seed(seed)
    return T2IAdapter(in_channels=3, channels=[*SDXL_CHANNELS, SDXL_CHANNELS[-1]], num_res_blocks=1,
                      downscale_factor=2 * vae_scale_factor, adapter_type="full_adapter_xl").eval()  # fmt: skip


@pytest.fixture(scope="module")
def sdxl_still(tmp_path_factory):
    folder = tiny_sdxl_folder(tmp_path_factory.mktemp("sdxl") / "sdxl")
    motion = MotionModules(MotionModuleConfig(block_out_channels=SDXL_CHANNELS, layers_per_block=2)).eval()
    pipe = AnimationPipeline.from_pretrained(folder, motion)  # motion modules that add nothing
    return pipe, xl_adapter(pipe.vae_scale_factor)


def _control_images(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((FRAMES, SIZE, SIZE, 3)).astype(np.float32)


def test_an_sdxl_t2i_adapter_matches_diffusers_sdxl_adapter_pipeline_frame_by_frame(sdxl_still, one_thread):
    ours, adapter = sdxl_still
    images = _control_images()
    got = ours(**ARGS, num_frames=FRAMES, seed=4, progress=False, controlnets=[ControlNet(adapter, images, 0.8)])
    plain = ours(**ARGS, num_frames=FRAMES, seed=4, progress=False)
    assert np.abs(got - plain).mean() > 1e-3  # the adapter steers

    reference = StableDiffusionXLAdapterPipeline(
        vae=ours.vae, text_encoder=ours.text_encoder, text_encoder_2=ours.text_encoder_2, tokenizer=ours.tokenizer,
        tokenizer_2=ours.tokenizer_2, unet=ours.unet.unet, adapter=adapter, scheduler=ours.scheduler,
    )  # fmt: skip
    reference.set_progress_bar_config(disable=True)
    f = ours.vae_scale_factor
    noise = torch.randn((1, 4, FRAMES, SIZE // f, SIZE // f), generator=torch.Generator().manual_seed(4))
    latents = noise[0].permute(1, 0, 2, 3)  # the clip's start noise, a frame per image
    args = {**ARGS, "prompt": [ARGS["prompt"]] * FRAMES}  # a batch of frames, each with its own control image
    expected = reference(**args, image=torch.from_numpy(images).permute(0, 3, 1, 2), latents=latents,
                         adapter_conditioning_scale=0.8, output_type="np").images  # fmt: skip
    np.testing.assert_allclose(got[0], expected, rtol=0, atol=1e-4)


def test_adapters_of_the_other_family_are_refused(sdxl_still, one_thread):
    ours, adapter = sdxl_still
    sd15 = T2IAdapter(channels=list(SDXL_CHANNELS), num_res_blocks=1, downscale_factor=ours.vae_scale_factor)
    with pytest.raises(InputError, match="an SD1.x T2I-Adapter for an SDXL base"):
        ours(**ARGS, num_frames=FRAMES, progress=False, controlnets=[ControlNet(sd15, _control_images())])
    sd15_base = {"block_out_channels": [320, 640, 1280, 1280]}
    with pytest.raises(InputError, match="an SDXL T2I-Adapter for an SD1.x base"):
        check_t2i_adapter(dict(adapter.config), sd15_base, "adapter")
    light = {"channels": [320, 640, 1280], "adapter_type": "light_adapter", "downscale_factor": 8}
    check_t2i_adapter(light, sd15_base, "colour", 8)  # diffusers' light adapter repeats its last level
    narrow = T2IAdapter(channels=[32, 64, 64, 32], num_res_blocks=1, downscale_factor=4, adapter_type="full_adapter_xl")
    with pytest.raises(InputError, match=r"features of widths \[32, 64, 64, 32\], but the base UNet takes \[32, 64"):
        ours(**ARGS, num_frames=FRAMES, progress=False, controlnets=[ControlNet(narrow, _control_images())])


def test_generate_takes_an_sdxl_t2i_adapter_folder_on_an_sdxl_base(tmp_path, one_thread):
    from PIL import Image

    from animatediff.cli import main
    from animatediff.formats import save_motion_modules
    from tests.sdxl_tiny import tiny_sdxl_motion

    base = tiny_sdxl_folder(tmp_path / "sdxl")
    motion = save_motion_modules(tiny_sdxl_motion(), tmp_path / "mm.safetensors")
    pipe = AnimationPipeline.from_pretrained(base, motion)
    xl_adapter(pipe.vae_scale_factor).save_pretrained(tmp_path / "adapter")
    (tmp_path / "frames").mkdir()
    images = (_control_images(1) * 255).astype(np.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "frames" / f"{i:04d}.png")
    args = ["generate", "--base", str(base), "--motion-module", str(motion), "--prompt", "a fox", "--steps", "2"]
    args += ["--frames", str(FRAMES), "--width", str(SIZE), "--height", str(SIZE), "--seed", "2", "--quiet"]
    controls = ["--controlnet", f"{tmp_path / 'adapter'}:0.7", "--control-frames", str(tmp_path / "frames")]
    assert main([*args, *controls, "--output", str(tmp_path / "o.npy")]) == 0
    control = ControlNet(T2IAdapter.from_pretrained(tmp_path / "adapter"), images, 0.7)
    expected = pipe("a fox", None, num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=2, seed=2,
                    progress=False, controlnets=[control])[0]  # fmt: skip
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), expected, rtol=0, atol=1e-5)
    assert np.abs(expected - pipe("a fox", None, num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=2,
                                  seed=2, progress=False)[0]).max() > 1e-3  # fmt: skip
