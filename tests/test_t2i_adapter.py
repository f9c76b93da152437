"""T2I-Adapters, given as ControlNets are: diffusers has no AnimateDiff T2I-Adapter pipeline, so the reference is its
`StableDiffusionAdapterPipeline` frame by frame (motion modules as freshly made add nothing, so our clip is a batch of
independent images, each frame its own start noise and control image); context windows take their frames' features;
a folder whose config names a T2IAdapter loads through --controlnet (single files: tests/test_t2i_adapter_files.py);
what does not fit is one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionAdapterPipeline, T2IAdapter

from animatediff.errors import InputError
from animatediff.pipeline.controlnet import ControlNet
from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet
from animatediff.pipeline.t2i_adapter import AdapterCondition
from tests.diffusers_reference import frames_as_images

FRAMES, SIZE = 4, 16
ARGS = dict(prompt="a red circle moving left", negative_prompt="blurry", height=SIZE, width=SIZE,
            num_inference_steps=3, guidance_scale=6.0)  # fmt: skip


def tiny_adapter(factor: int, in_channels: int = 3, seed: int = 0) -> T2IAdapter:
    """A random full T2I-Adapter for the tiny UNet (blocks of 32 and 64 channels)."""
    torch.manual_seed(seed)
    return T2IAdapter(in_channels=in_channels, channels=[32, 64], num_res_blocks=1, downscale_factor=factor,
                      adapter_type="full_adapter").eval()  # fmt: skip


def _images(seed: int = 0, frames: int = FRAMES) -> np.ndarray:
    return np.random.default_rng(seed).random((frames, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture
def still(make_pipeline):
    pipe = make_pipeline("v3", random=False)  # motion modules that add nothing
    return pipe, tiny_adapter(pipe.vae_scale_factor)


def test_a_t2i_adapter_matches_diffusers_adapter_pipeline_frame_by_frame(still, one_thread):
    ours, adapter = still
    images = _images()
    got = ours(**ARGS, num_frames=FRAMES, seed=4, progress=False, controlnets=[ControlNet(adapter, images, 0.8)])
    plain = ours(**ARGS, num_frames=FRAMES, seed=4, progress=False)
    assert np.abs(got - plain).mean() > 1e-3  # the adapter steers
    reference = StableDiffusionAdapterPipeline(
        vae=ours.vae, text_encoder=ours.text_encoder, tokenizer=ours.tokenizer, unet=ours.unet.unet, adapter=adapter,
        scheduler=ours.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    expected = frames_as_images(reference, ours.vae_scale_factor, images, 4, **ARGS, adapter_conditioning_scale=0.8)
    np.testing.assert_allclose(got[0], expected, rtol=0, atol=1e-4)


def test_windows_take_their_frames_features_and_the_steps_it_acts_in(still, one_thread, monkeypatch):
    ours, adapter = still
    seen = []
    original = AdapterCondition.unet_kwargs

    def spy(self, x, t, text, frames):  # noqa: ANN001, ANN202
        kwargs = original(self, x, t, text, frames)
        seen.append((tuple(frames.tolist()), {k: list(v) for k, v in kwargs.items()}))  # the UNet pops the list
        return kwargs

    monkeypatch.setattr(AdapterCondition, "unet_kwargs", spy)
    images = _images(1, 10)
    control = ControlNet(adapter, images, 1.0, end=0.5)  # the first half of the steps only
    args = {**ARGS, "num_inference_steps": 4}
    ours(**args, num_frames=10, seed=1, progress=False, controlnets=[control], context_length=6, context_overlap=2)
    features = adapter(torch.from_numpy(images).permute(0, 3, 1, 2))
    acting = [(frames, kwargs) for frames, kwargs in seen if kwargs]
    assert len(seen) == 8 and len(acting) == 4  # 4 steps × 2 windows; it acts in the first 2 steps
    for frames, kwargs in acting:
        residuals = kwargs["down_intrablock_additional_residuals"]
        expected = features[0][list(frames)].repeat(2, 1, 1, 1)  # every video of the guided batch
        torch.testing.assert_close(residuals[0], expected, rtol=0, atol=1e-6)


def test_a_grey_adapter_takes_the_images_in_grey_and_what_does_not_fit_is_one_line(still, one_thread, tmp_path):
    ours, adapter = still
    grey = tiny_adapter(ours.vae_scale_factor, in_channels=1, seed=2)
    frames = ours(**ARGS, num_frames=FRAMES, seed=2, progress=False, controlnets=[ControlNet(grey, _images(3))])
    assert np.isfinite(frames).all()
    wide = T2IAdapter(channels=[32, 32], num_res_blocks=1, downscale_factor=ours.vae_scale_factor)
    with pytest.raises(InputError, match=r"widths \[32, 32\], but the base UNet takes \[32, 64\]"):
        ours(**ARGS, num_frames=FRAMES, progress=False, controlnets=[ControlNet(wide, _images())])
    coarse = tiny_adapter(ours.vae_scale_factor * 4)
    with pytest.raises(InputError, match="latents 8× smaller than its images, but this base's VAE makes them 2×"):
        ours(**ARGS, num_frames=FRAMES, progress=False, controlnets=[ControlNet(coarse, _images())])
    with pytest.raises(InputError, match="a T2I-Adapter takes a control image per frame, without guess mode"):
        ours(**ARGS, num_frames=FRAMES, progress=False, controlnets=[ControlNet(adapter, _images(), guess_mode=True)])
    with pytest.raises(InputError, match="a T2I-Adapter takes a control image per frame"):
        ours(**ARGS, num_frames=FRAMES, progress=False, controlnets=[KeyframeControlNet(adapter, {0: _images()[0]})])


def test_generate_takes_a_t2i_adapter_folder_as_a_controlnet(tmp_path, base_folder, one_thread):

    from animatediff.formats import save_motion_modules
    from animatediff.pipeline import AnimationPipeline
    from tests.cli_helpers import controlled_call, generate_controlled
    from tests.tiny import tiny_motion

    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    tiny_adapter(pipe.vae_scale_factor).save_pretrained(tmp_path / "sketch")
    images = (_images(5) * 255).astype(np.uint8)
    drawn = generate_controlled(base_folder, motion, f"{tmp_path / 'sketch'}:0.6", images, tmp_path)
    control = ControlNet(T2IAdapter.from_pretrained(tmp_path / "sketch"), images, 0.6)
    expected = pipe("a fox", None, **controlled_call(images), controlnets=[control])[0]
    np.testing.assert_allclose(drawn, expected, rtol=0, atol=1e-5)


def test_latents_of_another_size_take_features_of_the_images_resized(still, one_thread):
    """The gradual latent hires fix's smaller latents: the adapter's features of the control images resized to them,
    as a ControlNet's images are; the clip is drawn."""
    from animatediff.sampling.gradual_latent import GradualLatent

    ours, adapter = still
    size = 32
    images = np.random.default_rng(4).random((FRAMES, size, size, 3)).astype(np.float32)
    gradual = GradualLatent({0.0: 0.5, 0.5: 1.0}, reverse_steps=1, noise_add_count=1)
    args = {**ARGS, "height": size, "width": size, "num_inference_steps": 4}
    frames = ours(**args, num_frames=FRAMES, seed=3, progress=False, controlnets=[ControlNet(adapter, images)],
                  gradual_latent=gradual)  # fmt: skip
    plain = ours(**args, num_frames=FRAMES, seed=3, progress=False, gradual_latent=gradual)
    assert frames.shape == (1, FRAMES, size, size, 3) and np.abs(frames - plain).mean() > 1e-3
