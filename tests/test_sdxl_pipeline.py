"""SDXL bases: the family read from a folder, both text encoders, pooled text and size conditioning; the same
frames as diffusers' AnimateDiffSDXLPipeline (whose motion norm spans the clip, as the official SDXL module's does);
clear errors for what is not SD1.x or SDXL and for a motion module of the other family."""

import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffSDXLPipeline

from animatediff.base_model import base_family, load_base
from animatediff.errors import InputError
from animatediff.models import MotionModuleConfig, MotionModules, inflate_unet
from animatediff.pipeline import AnimationPipeline
from tests.diffusers_reference import diffusers_adapter, diffusers_motion_unet
from tests.sdxl_tiny import tiny_sdxl_folder, tiny_sdxl_pipeline
from tests.tiny import tiny_unet

ARGS = dict(prompt="a red circle moving left", height=32, width=32, num_inference_steps=3, guidance_scale=7.5)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return tiny_sdxl_pipeline(tmp_path_factory.mktemp("sdxl"))


def reference(ours: AnimationPipeline, **parts: object) -> AnimateDiffSDXLPipeline:
    """diffusers' AnimateDiffSDXLPipeline on our weights; `parts`: more of its components (an image encoder)."""
    pipe = AnimateDiffSDXLPipeline(
        vae=ours.vae,
        text_encoder=ours.text_encoder,
        text_encoder_2=ours.text_encoder_2,
        tokenizer=ours.tokenizer,
        tokenizer_2=ours.tokenizer_2,
        unet=diffusers_motion_unet(ours.unet.unet, ours.unet.motion_modules),
        motion_adapter=diffusers_adapter(ours.unet.motion_modules),
        scheduler=ours.scheduler,
        **parts,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("negative_prompt", [None, "blurry"])
def test_frames_match_diffusers_sdxl_pipeline(sdxl, one_thread, negative_prompt):
    assert sdxl.unet.motion_modules.config.norm_over_frames
    generator = torch.Generator("cpu").manual_seed(5)
    expected = reference(sdxl)(
        **ARGS, negative_prompt=negative_prompt, num_frames=8, generator=generator, output_type="np"
    ).frames
    got = sdxl(**ARGS, negative_prompt=negative_prompt, num_frames=8, seed=5, progress=False)
    assert got.shape == (1, 8, 32, 32, 3)
    assert np.abs(np.diff(got, axis=1)).mean() > 1e-3  # the motion modules are active
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_free_u_matches_diffusers_sdxl_pipeline_enable_freeu(sdxl, one_thread):
    from animatediff.pipeline import FreeU

    ref = reference(sdxl)
    ref.enable_freeu(s1=0.9, s2=0.2, b1=1.3, b2=1.4)
    generator = torch.Generator("cpu").manual_seed(5)
    expected = ref(**ARGS, num_frames=8, generator=generator, output_type="np").frames
    got = sdxl(**ARGS, num_frames=8, seed=5, progress=False, free_u=FreeU(b1=1.3, b2=1.4, s1=0.9, s2=0.2))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert np.abs(got - sdxl(**ARGS, num_frames=8, seed=5, progress=False)).max() > 1e-3


def test_pooled_text_and_size_conditioning_reach_the_unet(sdxl, one_thread):
    plain = sdxl(**ARGS, num_frames=4, seed=1, progress=False)
    given = sdxl(**ARGS, negative_prompt="", num_frames=4, seed=1, progress=False)
    assert np.abs(plain - given).max() > 1e-3  # no negative prompt: zeros, not the empty prompt's text
    pooled = sdxl.text_encoder_2
    with torch.no_grad():
        pooled.text_projection.weight.mul_(3)
    try:
        assert np.abs(sdxl(**ARGS, num_frames=4, seed=1, progress=False) - plain).max() > 1e-3
    finally:
        with torch.no_grad():
            pooled.text_projection.weight.div_(3)


def test_prompt_travel_windows_and_one_prompt_agree(sdxl, one_thread):
    plain = sdxl(**ARGS, num_frames=8, seed=2, progress=False)
    one_keyframe = sdxl(**{**ARGS, "prompt": {0: ARGS["prompt"]}}, num_frames=8, seed=2, progress=False)
    np.testing.assert_array_equal(plain, one_keyframe)
    travel = {0: ARGS["prompt"], 7: "a blue square moving up"}
    moved = sdxl(**{**ARGS, "prompt": travel}, num_frames=8, seed=2, progress=False)
    assert np.abs(moved[:, -1] - plain[:, -1]).max() > 1e-2
    windowed = sdxl(**ARGS, num_frames=8, seed=2, progress=False, context_length=8)
    np.testing.assert_allclose(windowed, plain, rtol=0, atol=1e-6)  # one window over the clip: plain sampling
    long = sdxl(**{**ARGS, "prompt": travel}, num_frames=12, seed=2, progress=False, context_length=8)
    assert long.shape[1] == 12 and np.isfinite(long).all()


def test_family_is_read_from_the_folder(tmp_path):
    folder = tiny_sdxl_folder(tmp_path / "sdxl")
    assert base_family(folder) == "sdxl"
    base = load_base(folder)
    assert base.traits.family == "sdxl" and base.traits.zero_empty_negative and base.text_encoder_2 is not None
    assert base.traits.size_multiple == 8 and base.traits.native_size == 16  # tiny VAE 2×, three UNet levels

    refiner = tmp_path / "refiner"
    shutil.copytree(folder, refiner)
    shutil.rmtree(refiner / "text_encoder")
    with pytest.raises(InputError, match="is an SDXL refiner"):
        load_base(refiner)
    sd2 = tmp_path / "sd2"
    (sd2 / "unet").mkdir(parents=True)
    (sd2 / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 1024}))
    with pytest.raises(InputError, match="Stable Diffusion 2.x"):
        base_family(sd2)
    flux = tmp_path / "flux"
    (flux / "transformer").mkdir(parents=True)
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(InputError, match="holds Flux"):
        load_base(flux)


def test_a_motion_module_of_the_other_family_is_named():
    with torch.device("meta"):  # the real shapes, no weights
        sd1_unet, sdxl_unet = tiny_unet(channels=(320, 640, 1280, 1280)), tiny_unet(channels=(320, 640, 1280))
        sd1_modules = MotionModules(MotionModuleConfig(block_out_channels=(320, 640, 1280, 1280)))
        sdxl_modules = MotionModules(MotionModuleConfig(block_out_channels=(320, 640, 1280)))
    with pytest.raises(InputError, match=r"is for SDXL \(UNet channels \(320, 640, 1280\)\) but the base is SD1\.x"):
        inflate_unet(sd1_unet, sdxl_modules)
    with pytest.raises(InputError, match=r"is for SD1\.x .* but the base is SDXL .*; use an SDXL motion module"):
        inflate_unet(sdxl_unet, sd1_modules)
