"""A ControlNet on an SDXL base: its added text/time embeddings take the pooled text and size ids the UNet takes.

diffusers has no AnimateDiff SDXL ControlNet pipeline, so the reference is its `StableDiffusionXLControlNetPipeline`
frame by frame: with motion modules as freshly made (their output projections zero, so they add nothing), our clip
is a batch of independent SDXL images, each frame its own start noise and control image. Also: guess mode, the
family checks both ways, and keyframe ControlNets refused on SDXL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

from animatediff.errors import InputError
from animatediff.formats.controlnet import check_controlnet
from animatediff.models import MotionModuleConfig, MotionModules
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.controlnet import ControlNet
from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet
from tests.diffusers_reference import frames_as_images
from tests.sdxl_tiny import SDXL_CHANNELS, sdxl_image_parts, tiny_sdxl_folder
from tests.tiny import tiny_unet

FRAMES, SIZE = 3, 32
ARGS = dict(prompt="a red circle moving left", height=SIZE, width=SIZE, num_inference_steps=3, guidance_scale=6.0)


@pytest.fixture(scope="module")
def sdxl_still(tmp_path_factory):
    """Our pipeline over the tiny SDXL with motion modules that add nothing, and a random SDXL ControlNet."""
    folder = tiny_sdxl_folder(tmp_path_factory.mktemp("sdxl") / "sdxl")
    motion = MotionModules(MotionModuleConfig(block_out_channels=SDXL_CHANNELS, layers_per_block=2)).eval()
    pipe = AnimationPipeline.from_pretrained(folder, motion)
    torch.manual_seed(3)
    controlnet = ControlNetModel.from_unet(pipe.unet.unet, conditioning_embedding_out_channels=(8, 16)).eval()
    with torch.no_grad():
        for name, p in controlnet.named_parameters():
            if "zero_convs" in name or "mid_block" in name or "controlnet_cond_embedding.conv_out" in name:
                p.normal_(0, 0.1)  # ControlNetModel zero-initializes these: random, so that it steers
    return pipe, controlnet


def _control_images(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((FRAMES, SIZE, SIZE, 3)).astype(np.float32)


@pytest.mark.parametrize("guess_mode", [False, True])
def test_an_sdxl_controlnet_matches_diffusers_sdxl_controlnet_pipeline_frame_by_frame(sdxl_still, one_thread,
                                                                                     guess_mode):  # fmt: skip
    ours, controlnet = sdxl_still
    images = _control_images()
    control = ControlNet(controlnet, images, scale=0.8, guess_mode=guess_mode)
    got = ours(**ARGS, num_frames=FRAMES, seed=4, progress=False, controlnets=[control])
    plain = ours(**ARGS, num_frames=FRAMES, seed=4, progress=False)
    assert np.abs(got - plain).mean() > 1e-3  # the ControlNet steers

    reference = StableDiffusionXLControlNetPipeline(**sdxl_image_parts(ours), controlnet=controlnet)
    expected = frames_as_images(reference, ours.vae_scale_factor, images, 4, **ARGS,
                                controlnet_conditioning_scale=0.8, guess_mode=guess_mode)  # fmt: skip
    np.testing.assert_allclose(got[0], expected, rtol=0, atol=1e-4)


def test_controlnets_of_the_other_family_are_refused(sdxl_still, one_thread):
    ours, controlnet = sdxl_still
    sd15 = ControlNetModel.from_unet(tiny_unet(), conditioning_embedding_out_channels=(8, 16)).eval()
    with pytest.raises(InputError, match="cross-attention dimension 32"):
        ours(**ARGS, num_frames=FRAMES, progress=False, controlnets=[ControlNet(sd15, _control_images())])
    base = dict(sd15.config)
    sdxl_like = {**base, "addition_embed_type": "text_time"}  # the same widths, SDXL's added embeddings
    with pytest.raises(InputError, match="an SDXL-style ControlNet .* for an SD1.x base; use a ControlNet made for"):
        check_controlnet(sdxl_like, base)
    with pytest.raises(InputError, match="an SD1.x-style ControlNet for an SDXL base"):
        check_controlnet(base, sdxl_like)
    check_controlnet(dict(controlnet.config), ours.unet.config)  # an SDXL ControlNet for an SDXL base


def test_an_sdxl_keyframe_controlnet_with_an_image_on_every_frame_is_the_plain_controlnet(sdxl_still, one_thread):
    """Each keyframe's residuals computed on its own frame with its video's pooled text and size ids: with a keyframe
    on every frame and no spread, the plain ControlNet's frames (which match diffusers'); windows too."""
    ours, controlnet = sdxl_still
    images = _control_images(2)
    plain = ours(**ARGS, num_frames=FRAMES, seed=6, progress=False, controlnets=[ControlNet(controlnet, images, 0.7)])
    keyed = KeyframeControlNet(controlnet, dict(enumerate(images)), 0.7)
    got = ours(**ARGS, num_frames=FRAMES, seed=6, progress=False, controlnets=[keyed])
    np.testing.assert_allclose(got, plain, rtol=0, atol=1e-5)
    two = ours(**{**ARGS, "prompt": [ARGS["prompt"], "a blue square"]}, num_frames=FRAMES, seed=6, progress=False,
               controlnets=[keyed])  # fmt: skip
    np.testing.assert_allclose(two[:1], plain, rtol=0, atol=1e-5)  # the first video's own pooled text, not mixed


def test_generate_takes_an_sdxl_controlnet_folder_on_an_sdxl_base(tmp_path, one_thread):
    """--controlnet FOLDER --control-frames DIR on an SDXL base draws what the pipeline draws with that ControlNet."""
    from diffusers import UNet2DConditionModel

    from animatediff.formats import save_motion_modules
    from tests.cli_helpers import controlled_call, generate_controlled
    from tests.sdxl_tiny import tiny_sdxl_motion

    base = tiny_sdxl_folder(tmp_path / "sdxl")
    motion = save_motion_modules(tiny_sdxl_motion(), tmp_path / "mm.safetensors")
    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16)).save_pretrained(tmp_path / "cn")
    images = (_control_images(1) * 255).astype(np.uint8)
    drawn = generate_controlled(base, motion, str(tmp_path / "cn"), images, tmp_path)
    pipe = AnimationPipeline.from_pretrained(base, motion)
    control = ControlNet(ControlNetModel.from_pretrained(tmp_path / "cn"), images)
    expected = pipe("a fox", None, **controlled_call(images), controlnets=[control])[0]
    np.testing.assert_allclose(drawn, expected, rtol=0, atol=1e-5)


def test_an_sdxl_controlnet_file_in_diffusers_names_loads_exactly(tmp_path):
    """A single .safetensors in diffusers' key names (sd_control_collection's diffusers_xl_* files) for an SDXL base."""
    from safetensors.torch import save_file

    from animatediff.formats.controlnet import load_controlnet
    from tests.sdxl_tiny import tiny_sdxl_unet

    unet = tiny_sdxl_unet()
    made = ControlNetModel.from_unet(unet)
    with torch.no_grad():
        for p in made.parameters():
            p.normal_(0, 0.1)
    save_file({k: v.contiguous() for k, v in made.state_dict().items()}, str(tmp_path / "xl.safetensors"))
    loaded = load_controlnet(tmp_path / "xl.safetensors", unet)
    assert loaded.config.addition_embed_type == "text_time"
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), made.state_dict().values(), strict=True))
