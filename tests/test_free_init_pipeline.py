"""FreeInit in the pipeline: the same frames as diffusers' AnimateDiffPipeline with `enable_free_init`, plain
generation for one iteration, and composition with the predictor wrappers (context windows, FreeNoise)."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline

from animatediff.sampling import FreeInit
from tests.diffusers_reference import diffusers_adapter, diffusers_pipeline

ARGS = dict(
    prompt="a red circle moving left",
    negative_prompt="blurry",
    num_frames=6,
    height=16,
    width=16,
    num_inference_steps=3,
    guidance_scale=7.5,
)


def _reference(ours) -> AnimateDiffPipeline:  # noqa: ANN001
    """diffusers' pipeline on our weights (official per-frame motion norm, as in tests/test_pipeline.py)."""
    return diffusers_pipeline(ours)


@pytest.mark.parametrize(
    "config",
    [
        FreeInit(iterations=2, filter="butterworth"),
        FreeInit(iterations=2, filter="gaussian", spatial_stop=0.4, temporal_stop=0.3),
        FreeInit(iterations=3, filter="ideal", spatial_stop=0.5, temporal_stop=0.5, fast_sampling=True),
        FreeInit(iterations=2, filter="butterworth", order=2, spatial_stop=0.5, fast_sampling=True),
    ],
    ids=["butterworth", "gaussian", "ideal-fast", "butterworth-fast"],
)
def test_free_init_matches_diffusers(make_pipeline, one_thread, config):
    ours = make_pipeline("v2")
    reference = _reference(ours)
    reference.enable_free_init(
        num_iters=config.iterations,
        use_fast_sampling=config.fast_sampling,
        method=config.filter,
        order=config.order,
        spatial_stop_frequency=config.spatial_stop,
        temporal_stop_frequency=config.temporal_stop,
    )
    expected = reference(**ARGS, generator=torch.Generator("cpu").manual_seed(7), output_type="np").frames
    got = ours(**ARGS, seed=7, progress=False, free_init=config)
    plain = ours(**ARGS, seed=7, progress=False)
    assert np.abs(got - plain).max() > 1e-2  # the later runs changed the video
    print(f"{config.filter} fast={config.fast_sampling}: max |ours - diffusers| = {np.abs(got - expected).max():.2e}")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_one_iteration_is_plain_generation(make_pipeline, one_thread):
    pipe = make_pipeline()
    args = {**ARGS, "num_frames": 4, "num_inference_steps": 2}
    plain = pipe(**args, seed=3, progress=False)
    for config in (FreeInit(iterations=1), FreeInit(iterations=1, filter="box", fast_sampling=True)):
        np.testing.assert_array_equal(pipe(**args, seed=3, progress=False, free_init=config), plain)


def _final_latents(pipe, **kwargs) -> list[torch.Tensor]:  # noqa: ANN001
    """The latents at the end of each run of the loop (FreeInit runs it several times)."""
    ends, steps = [], kwargs["num_inference_steps"]
    pipe(**kwargs, progress=False, callback=lambda i, t, x: ends.append(x.clone()) if i == steps - 1 else None)
    return ends


def test_free_init_composes_with_context_windows(make_pipeline, one_thread):
    """The loop reruns whatever denoiser it gets: with sliding windows, its first run is the plain windowed run,
    and one iteration is exactly that run."""
    pipe = make_pipeline()
    args = {**ARGS, "num_frames": 6, "num_inference_steps": 2, "context_length": 4, "context_overlap": 2, "seed": 5}
    (plain,) = _final_latents(pipe, **args)
    first, second = _final_latents(pipe, **args, free_init=FreeInit(iterations=2, filter="box"))
    torch.testing.assert_close(first, plain, rtol=0, atol=0)
    assert (second - first).abs().max() > 1e-2
    (one,) = _final_latents(pipe, **args, free_init=FreeInit(iterations=1))
    torch.testing.assert_close(one, plain, rtol=0, atol=0)


def test_free_init_composes_with_free_noise_as_diffusers_does(make_pipeline, one_thread):
    """FreeNoise's rescheduled start and windowed motion attention under FreeInit: the fresh noise follows
    FreeNoise's draws from the same generator, and the frames are diffusers' with both enabled."""
    from animatediff.pipeline.free_noise import FreeNoise  # another engineer's part; only this test needs it

    ours = make_pipeline("v2")
    reference = _reference(ours)
    reference.register_modules(motion_adapter=diffusers_adapter(ours.unet.motion_modules))  # FreeNoise reads it
    reference.enable_free_noise(context_length=4, context_stride=2, weighting_scheme="pyramid")
    reference.enable_free_init(num_iters=2, method="butterworth")
    args = {**ARGS, "num_frames": 8, "num_inference_steps": 2}
    expected = reference(**args, generator=torch.Generator("cpu").manual_seed(5), output_type="np").frames
    free_noise = FreeNoise(context_length=4, context_stride=2)
    got = ours(**args, seed=5, progress=False, free_noise=free_noise, free_init=FreeInit(iterations=2))
    plain = ours(**args, seed=5, progress=False, free_noise=free_noise)
    assert np.abs(got - plain).max() > 1e-2
    print(f"FreeNoise + FreeInit: max |ours - diffusers| = {np.abs(got - expected).max():.2e}")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
