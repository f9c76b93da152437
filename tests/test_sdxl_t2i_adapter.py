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
from tests.diffusers_reference import frames_as_images
from tests.sdxl_tiny import SDXL_CHANNELS, sdxl_image_parts, tiny_sdxl_folder

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

    reference = StableDiffusionXLAdapterPipeline(**sdxl_image_parts(ours), adapter=adapter)
    expected = frames_as_images(reference, ours.vae_scale_factor, images, 4, **ARGS, adapter_conditioning_scale=0.8)
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

    from animatediff.formats import save_motion_modules
    from tests.cli_helpers import controlled_call, generate_controlled
    from tests.sdxl_tiny import tiny_sdxl_motion

    base = tiny_sdxl_folder(tmp_path / "sdxl")
    motion = save_motion_modules(tiny_sdxl_motion(), tmp_path / "mm.safetensors")
    pipe = AnimationPipeline.from_pretrained(base, motion)
    xl_adapter(pipe.vae_scale_factor).save_pretrained(tmp_path / "adapter")
    images = (_control_images(1) * 255).astype(np.uint8)
    drawn = generate_controlled(base, motion, f"{tmp_path / 'adapter'}:0.7", images, tmp_path)
    control = ControlNet(T2IAdapter.from_pretrained(tmp_path / "adapter"), images, 0.7)
    expected = pipe("a fox", None, **controlled_call(images), controlnets=[control])[0]
    np.testing.assert_allclose(drawn, expected, rtol=0, atol=1e-5)
    assert np.abs(expected - pipe("a fox", None, **controlled_call(images))[0]).max() > 1e-3
