"""SparseCtrl: the same frames as diffusers' AnimateDiffSparseControlNetPipeline on the same tiny random weights and
seed (official per-frame motion norm on both sides; a keyframe encoded to its latent mean on both)."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffSparseControlNetPipeline
from diffusers.pipelines.animatediff import pipeline_animatediff_sparsectrl

from animatediff.pipeline.sparse_ctrl import SparseCtrl
from tests.diffusers_reference import diffusers_motion_unet
from tests.sparse_ctrl_helpers import diffusers_sparse_ctrl, tiny_sparse_ctrl

ARGS = dict(prompt="a red circle moving left", negative_prompt="blurry", num_frames=6, height=16, width=16)


def keyframe(seed: int) -> torch.Tensor:
    return torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def pipe(make_pipeline, one_thread):
    return make_pipeline("v3")


@pytest.fixture(autouse=True)
def latent_means(monkeypatch):
    """diffusers draws a keyframe's latents from the VAE's distribution with the global generator; ours is its mean."""
    monkeypatch.setattr(
        pipeline_animatediff_sparsectrl,
        "retrieve_latents",
        lambda out, generator=None, sample_mode="sample": out.latent_dist.mode(),
    )


def run_both(pipe, control, steps=4, guidance_scale=7.5, seed=7):
    ref = AnimateDiffSparseControlNetPipeline(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=diffusers_motion_unet(pipe.unet.unet, pipe.unet.motion_modules),
        motion_adapter=None,
        controlnet=diffusers_sparse_ctrl(control.model),
        scheduler=pipe.scheduler,
    )
    ref.set_progress_bar_config(disable=True)
    expected = ref(
        **ARGS,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        conditioning_frames=[image[None] for image in control.keyframes.values()],
        controlnet_frame_indices=list(control.keyframes),
        controlnet_conditioning_scale=control.scale,
        guess_mode=control.guess_mode,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    ).frames
    got = pipe(**ARGS, num_inference_steps=steps, guidance_scale=guidance_scale, seed=seed, progress=False,
               sparse_ctrls=[control])  # fmt: skip
    plain = pipe(**ARGS, num_inference_steps=steps, guidance_scale=guidance_scale, seed=seed, progress=False)
    return got, expected, plain


def check(got, expected, plain, steers=1e-2):
    assert got.shape == (1, 6, 16, 16, 3)
    assert np.abs(got - plain).mean() > steers  # the SparseCtrl steers
    difference = float(np.abs(got - expected).max())
    print(f"max abs difference {difference:.2e}")
    assert difference <= 1e-4, difference


def test_rgb_image_to_video_matches_diffusers(pipe):
    control = SparseCtrl(tiny_sparse_ctrl(pipe.unet.unet, "rgb"), {0: keyframe(0)}, scale=0.9)
    check(*run_both(pipe, control))


def test_scribble_keyframes_match_diffusers(pipe):
    control = SparseCtrl(tiny_sparse_ctrl(pipe.unet.unet, "scribble"), {0: keyframe(1), 5: keyframe(2)})
    check(*run_both(pipe, control))


def test_guess_mode_without_guidance_matches_diffusers(pipe):
    control = SparseCtrl(tiny_sparse_ctrl(pipe.unet.unet, "rgb"), {2: keyframe(3)}, guess_mode=True)
    got, expected, plain = run_both(pipe, control, guidance_scale=1.0)
    check(got, expected, plain, steers=2e-3)  # residuals scaled 0.1 … 1: it steers less
    normal = pipe(**ARGS, num_inference_steps=4, guidance_scale=1.0, seed=7, progress=False,
                  sparse_ctrls=[SparseCtrl(control.model, control.keyframes)])  # fmt: skip
    assert np.abs(normal - got).mean() > 1e-3  # the geometric scaling acted
