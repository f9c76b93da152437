"""ControlNet on AnimateDiff: the same frames as diffusers' AnimateDiffControlNetPipeline on the same tiny random
weights and seed (official per-frame motion norm on both sides, tests/diffusers_reference.py)."""

import copy

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffControlNetPipeline, AnimateDiffVideoToVideoControlNetPipeline

from animatediff.pipeline.controlnet import ControlNet
from animatediff.sampling import FreeInit
from tests.controlnet_helpers import tiny_controlnet
from tests.diffusers_reference import diffusers_adapter, diffusers_motion_unet

ARGS = dict(prompt="a red circle moving left", negative_prompt="blurry", num_frames=6, height=16, width=16)


def control_frames(seed: int, num_frames: int = 6, size: int = 16) -> torch.Tensor:
    return torch.rand(num_frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def padded_for_guess_mode(model):
    """A copy of `model` that, in guess mode, gives the unconditional half of the guided batch zero residuals, as
    diffusers' StableDiffusionControlNetPipeline pads them; its AnimateDiffControlNetPipeline leaves that out and
    fails under guidance (a batch of b·f residuals for 2b·f latents)."""
    padded = copy.deepcopy(model)
    forward = padded.forward

    def forward_padded(*args, guess_mode=False, **kwargs):
        down, mid = forward(*args, guess_mode=guess_mode, **kwargs)
        if guess_mode:
            down = [torch.cat([torch.zeros_like(d), d]) for d in down]
            mid = torch.cat([torch.zeros_like(mid), mid])
        return down, mid

    padded.forward = forward_padded
    return padded


def reference(pipe, controlnets, pad_guess_mode=False, motion_adapter=False):
    models = [c.model for c in controlnets]
    if pad_guess_mode:
        models = [padded_for_guess_mode(m) for m in models]
    ref = AnimateDiffControlNetPipeline(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=diffusers_motion_unet(pipe.unet.unet, pipe.unet.motion_modules),
        motion_adapter=diffusers_adapter(pipe.unet.motion_modules) if motion_adapter else None,
        controlnet=models[0] if len(models) == 1 else models,
        scheduler=pipe.scheduler,
    )
    ref.set_progress_bar_config(disable=True)
    return ref


def run_both(pipe, controlnets, steps=4, guidance_scale=7.5, seed=7, pad_guess_mode=False):
    ref = reference(pipe, controlnets, pad_guess_mode)
    frames = [list(c.frames) for c in controlnets]
    one = len(controlnets) == 1
    expected = ref(
        **ARGS,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        conditioning_frames=frames[0] if one else frames,
        controlnet_conditioning_scale=controlnets[0].scale if one else [c.scale for c in controlnets],
        control_guidance_start=[c.start for c in controlnets],
        control_guidance_end=[c.end for c in controlnets],
        guess_mode=controlnets[0].guess_mode,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    ).frames
    got = pipe(**ARGS, num_inference_steps=steps, guidance_scale=guidance_scale, seed=seed, progress=False,
               controlnets=controlnets)  # fmt: skip
    plain = pipe(**ARGS, num_inference_steps=steps, guidance_scale=guidance_scale, seed=seed, progress=False)
    return got, expected, plain


def check(got, expected, plain):
    assert got.shape == (1, 6, 16, 16, 3)
    assert np.abs(got - plain).mean() > 1e-2  # the ControlNet steers
    difference = float(np.abs(got - expected).max())
    print(f"max abs difference {difference:.2e}")
    assert difference <= 1e-4, difference


@pytest.fixture
def pipe(make_pipeline, one_thread):
    return make_pipeline("v2")


def test_one_controlnet_matches_diffusers(pipe):
    control = ControlNet(tiny_controlnet(pipe.unet.unet), control_frames(0), scale=0.8)
    check(*run_both(pipe, [control]))


def test_two_controlnets_match_diffusers_multicontrolnet(pipe):
    controls = [
        ControlNet(tiny_controlnet(pipe.unet.unet, seed=11), control_frames(0), scale=0.7, end=0.75),
        ControlNet(tiny_controlnet(pipe.unet.unet, seed=12), control_frames(1), scale=1.2, start=0.25),
    ]
    check(*run_both(pipe, controls))


def test_control_start_and_end_match_diffusers(pipe):
    control = ControlNet(tiny_controlnet(pipe.unet.unet), control_frames(2), start=0.2, end=0.6)
    got, expected, plain = run_both(pipe, [control], steps=5)
    check(got, expected, plain)
    always = pipe(**ARGS, num_inference_steps=5, seed=7, progress=False, guidance_scale=7.5,
                  controlnets=[ControlNet(control.model, control.frames)])  # fmt: skip
    assert np.abs(always - got).mean() > 1e-3  # start/end changed which steps it acted in


def test_guess_mode_without_guidance_matches_diffusers(pipe):
    control = ControlNet(tiny_controlnet(pipe.unet.unet), control_frames(3), guess_mode=True)
    got, expected, plain = run_both(pipe, [control], guidance_scale=1.0)
    check(got, expected, plain)
    normal = pipe(**ARGS, num_inference_steps=4, guidance_scale=1.0, seed=7, progress=False,
                  controlnets=[ControlNet(control.model, control.frames)])  # fmt: skip
    assert np.abs(normal - got).mean() > 1e-3  # the geometric scaling acted


def test_guess_mode_under_guidance_matches_diffusers_with_zero_unconditional_residuals(pipe):
    controls = [
        ControlNet(tiny_controlnet(pipe.unet.unet, seed=11), control_frames(4), guess_mode=True),
        ControlNet(tiny_controlnet(pipe.unet.unet, seed=12), control_frames(5), scale=0.5, guess_mode=True),
    ]
    check(*run_both(pipe, controls, pad_guess_mode=True))


def test_video_to_video_with_a_controlnet_matches_diffusers(pipe):
    """Start and end are fractions of the steps the run goes through: those a strength below 1 leaves."""
    control = ControlNet(tiny_controlnet(pipe.unet.unet), control_frames(6), scale=0.9, start=0.2, end=0.7)
    video = control_frames(7).permute(0, 2, 3, 1).numpy()
    ref = AnimateDiffVideoToVideoControlNetPipeline(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=diffusers_motion_unet(pipe.unet.unet, pipe.unet.motion_modules),
        motion_adapter=None,
        controlnet=control.model,
        scheduler=pipe.scheduler,
    )
    ref.set_progress_bar_config(disable=True)
    args = {k: v for k, v in ARGS.items() if k != "num_frames"} | dict(num_inference_steps=8, guidance_scale=7.5)
    expected = ref(**args, video=video, strength=0.6, conditioning_frames=list(control.frames),
                   controlnet_conditioning_scale=0.9, control_guidance_start=0.2, control_guidance_end=0.7,
                   generator=torch.Generator("cpu").manual_seed(7), output_type="np").frames  # fmt: skip
    got = pipe(**ARGS | args, video=video, strength=0.6, seed=7, progress=False, controlnets=[control])
    plain = pipe(**ARGS | args, video=video, strength=0.6, seed=7, progress=False)
    check(got, expected, plain)


def test_free_init_reruns_with_the_controlnet_at_the_same_steps_as_diffusers(pipe):
    """FreeInit reruns the loop: each run finds its steps again from t, as diffusers counts them afresh."""
    control = ControlNet(tiny_controlnet(pipe.unet.unet), control_frames(8), start=0.25, end=0.75)
    ref = reference(pipe, [control])
    ref.enable_free_init(num_iters=2, method="butterworth")
    expected = ref(**ARGS, num_inference_steps=4, guidance_scale=7.5, conditioning_frames=list(control.frames),
                   control_guidance_start=0.25, control_guidance_end=0.75,
                   generator=torch.Generator("cpu").manual_seed(7), output_type="np").frames  # fmt: skip
    free_init = FreeInit(iterations=2, filter="butterworth")
    got = pipe(**ARGS, num_inference_steps=4, guidance_scale=7.5, seed=7, progress=False, controlnets=[control],
               free_init=free_init)  # fmt: skip
    plain = pipe(**ARGS, num_inference_steps=4, guidance_scale=7.5, seed=7, progress=False, free_init=free_init)
    check(got, expected, plain)


def test_prompt_travel_gives_the_controlnet_per_frame_text_as_diffusers(pipe):
    """A prompt dict: diffusers interpolates it under FreeNoise (a window as long as the clip changes nothing else)
    and hands the ControlNet the per-frame text, as the UNet."""
    control = ControlNet(tiny_controlnet(pipe.unet.unet), control_frames(9))
    ref = reference(pipe, [control], motion_adapter=True)
    ref.enable_free_noise(context_length=6, context_stride=4)
    travel = {0: "a red circle", 3: "a blue square", 5: "a green cross"}
    args = {k: v for k, v in ARGS.items() if k != "prompt"} | dict(num_inference_steps=4, guidance_scale=7.5)
    expected = ref(prompt=travel, **args, conditioning_frames=list(control.frames),
                   generator=torch.Generator("cpu").manual_seed(7), output_type="np").frames  # fmt: skip
    got = pipe(travel, **args, seed=7, progress=False, controlnets=[control])
    plain = pipe(travel, **args, seed=7, progress=False)
    check(got, expected, plain)
