"""The hires fix (`pipeline/hires.py`): diffusers' AnimateDiffPipeline, its frames upscaled, then diffusers'
AnimateDiffVideoToVideoPipeline on them, draw what `hires_fix` draws; and its checks."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffVideoToVideoPipeline

from animatediff.errors import InputError
from animatediff.io.video_input import fit_frames
from animatediff.pipeline.hires import HiresFix, hires_fix
from tests.diffusers_reference import diffusers_pipeline

PROMPT = "a red circle moving left"
ARGS = dict(negative_prompt="blurry", num_frames=6, height=16, width=16, num_inference_steps=4, guidance_scale=7.5)


def test_the_second_pass_is_diffusers_video_to_video_on_the_upscaled_frames(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    text2video = diffusers_pipeline(pipe)
    video2video = diffusers_pipeline(pipe, cls=AnimateDiffVideoToVideoPipeline)
    first = text2video(PROMPT, **ARGS, generator=torch.Generator().manual_seed(7), output_type="np").frames
    upscaled = fit_frames(first[0], 32, 32)  # the pipeline's fit of a start video: antialiased bilinear
    args = {k: v for k, v in ARGS.items() if k not in ("num_frames", "height", "width", "num_inference_steps")}
    expected = video2video(
        prompt=PROMPT, video=upscaled, strength=0.5, height=32, width=32, num_inference_steps=6, **args,
        generator=torch.Generator().manual_seed(7), output_type="np",
    ).frames  # fmt: skip

    ours_first = pipe(PROMPT, **{k: v for k, v in ARGS.items() if k != "negative_prompt"}, negative_prompt="blurry",
                      seed=7, progress=False)  # fmt: skip
    np.testing.assert_allclose(ours_first, first, rtol=0, atol=1e-4)
    call = {k: v for k, v in ARGS.items() if k != "negative_prompt"}
    got = hires_fix(pipe, ours_first, HiresFix(2, 0.5, steps=6), PROMPT, "blurry", seed=7, progress=False, **call)
    assert got.shape == (1, 6, 32, 32, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert np.abs(got[0] - upscaled).max() > 1e-2  # really drawn again


def test_each_video_of_a_batch_is_drawn_again_with_its_own_prompt(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    call = {k: v for k, v in ARGS.items() if k != "negative_prompt"}
    prompts = [PROMPT, "a blue square"]
    first = pipe(prompts, "blurry", seed=3, progress=False, **call)
    both = hires_fix(pipe, first, HiresFix(1.5), prompts, "blurry", seed=3, progress=False, **call)
    assert both.shape == (2, 6, 24, 24, 3)
    alone = hires_fix(pipe, first[1:], HiresFix(1.5), "a blue square", "blurry", seed=3, progress=False, **call)
    np.testing.assert_array_equal(both[1], alone[0])


def test_a_first_pass_with_free_init_or_a_video_runs_its_second_pass_without_them(make_pipeline, one_thread):
    from animatediff.sampling import FreeInit

    pipe = make_pipeline("v2")
    call = {k: v for k, v in ARGS.items() if k != "negative_prompt"}
    first = pipe(PROMPT, seed=3, progress=False, **call)
    plain = hires_fix(pipe, first, HiresFix(1.5), PROMPT, seed=3, progress=False, **call)
    extra = dict(free_init=FreeInit(iterations=2), video=first[0], strength=0.7)
    again = hires_fix(pipe, first, HiresFix(1.5), PROMPT, seed=3, progress=False, **call, **extra)
    np.testing.assert_array_equal(plain, again)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scale=0.5), "hires scale must be a number from 1 to 4, got 0.5"),
        (dict(scale=float("nan")), "hires scale must be a number from 1 to 4"),
        (dict(strength=0), "hires strength must be in (0, 1], got 0"),
        (dict(strength=True), "hires strength must be in (0, 1]"),
        (dict(strength=0.1, steps=5), "hires strength 0.1 leaves no step of 5 to run"),
        (dict(steps=0), "hires steps must be a whole number ≥ 1, got 0"),
    ],
)
def test_bad_settings_are_one_line(kwargs, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HiresFix(**kwargs)


def test_sizes_round_to_the_latent_grid_and_controls_are_refused(make_pipeline):
    assert HiresFix(1.5).size(512, 768) == (768, 1152)
    assert HiresFix(1.3).size(32, 32) == (40, 40) and HiresFix(1).size(16, 24) == (16, 24)
    pipe = make_pipeline("v2")
    first = np.zeros((1, 2, 16, 16, 3), np.float32)
    with pytest.raises(InputError, match="a hires fix does not take controlnets yet"):
        hires_fix(pipe, first, HiresFix(), PROMPT, controlnets=[object()])
