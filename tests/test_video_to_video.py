"""Video-to-video in the pipeline: the frames diffusers' AnimateDiffVideoToVideoPipeline gives for the same seed
(several strengths and schedulers, a batch of prompts, prompt travel, FreeNoise, FreeInit at strength 1), its
composition with context windows and conditions, and what a strength keeps of a clip of the embedded world."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffVideoToVideoPipeline

from animatediff.errors import InputError
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.video_start import VideoClip, encode_video, video_start
from animatediff.sampling import FreeInit, make_scheduler, sampling_timesteps
from tests.diffusers_reference import diffusers_adapter, diffusers_motion_unet

ARGS = dict(negative_prompt="blurry", height=16, width=16, num_inference_steps=5, guidance_scale=7.5)
PROMPT = "a red circle moving left"


def _video(frames: int = 6, seed: int = 0) -> np.ndarray:
    """A smooth moving pattern (f, 16, 16, 3) in [0, 1]."""
    y, x = np.mgrid[0:16, 0:16] / 16
    phase = np.random.default_rng(seed).random(3) * 6
    clip = [
        np.stack([0.5 + 0.5 * np.sin(6 * x + 0.4 * t + phase[c] + 3 * y * c) for c in range(3)], axis=-1)
        for t in range(frames)
    ]
    return np.stack(clip).astype(np.float32)


def _reference(ours, motion_adapter: bool = False) -> AnimateDiffVideoToVideoPipeline:  # noqa: ANN001
    """diffusers' video-to-video pipeline on our weights (official per-frame motion norm, as tests/test_pipeline.py)."""
    reference = AnimateDiffVideoToVideoPipeline(
        vae=ours.vae,
        text_encoder=ours.text_encoder,
        tokenizer=ours.tokenizer,
        unet=diffusers_motion_unet(ours.unet.unet, ours.unet.motion_modules),
        motion_adapter=diffusers_adapter(ours.unet.motion_modules) if motion_adapter else None,
        scheduler=ours.scheduler,
    )
    reference.set_progress_bar_config(disable=True)
    return reference


def _seed(seed: int = 7) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


@pytest.mark.parametrize("strength", [0.5, 0.8])
@pytest.mark.parametrize("scheduler", ["ddim", "dpm++-2m", "euler-ancestral", "heun"])
def test_frames_match_diffusers_video_to_video(make_pipeline, one_thread, scheduler, strength):
    """DDIM, a multistep solver, an ancestral sampler (whose steps draw from the same generator) and a second-order
    one (two timesteps a step: the start skips both of each step it leaves out)."""
    ours = make_pipeline("v2")
    ours.scheduler = make_scheduler(scheduler)
    reference = _reference(ours)
    video = _video()
    expected = reference(
        prompt=PROMPT, video=video, strength=strength, **ARGS, generator=_seed(), output_type="np"
    ).frames
    got = ours(PROMPT, video=video, strength=strength, num_frames=6, **ARGS, seed=7, progress=False)
    print(f"{scheduler} strength {strength}: max |ours - diffusers| = {np.abs(got - expected).max():.2e}")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    other = ours(PROMPT, video=_video(seed=1), strength=strength, num_frames=6, **ARGS, seed=7, progress=False)
    assert np.abs(got - other).max() > 1e-3  # the input video shapes the result (10× the tolerance)
    assert np.abs(np.diff(got, axis=1)).mean() > 1e-3


def test_a_batch_of_prompts_matches_diffusers_given_the_video_once_per_prompt(make_pipeline, one_thread):
    """One posterior sample per prompt, drawn video by video and chunk by chunk (`decode_chunk_size` 4 of 6)."""
    ours = make_pipeline("v2")
    reference = _reference(ours)
    video = _video()
    args = {**ARGS, "negative_prompt": ["blurry", "dark"], "decode_chunk_size": 4}
    prompts = [PROMPT, "a blue square"]
    expected = reference(
        prompt=prompts, video=[video, video], strength=0.6, **args, generator=_seed(), output_type="np"
    )
    got = ours(prompts, video=video, strength=0.6, num_frames=6, **args, seed=7, progress=False)
    assert got.shape == (2, 6, 16, 16, 3)
    print(f"two prompts: max |ours - diffusers| = {np.abs(got - expected.frames).max():.2e}")
    np.testing.assert_allclose(got, expected.frames, rtol=0, atol=1e-4)


def test_prompt_travel_and_free_noise_match_diffusers(make_pipeline, one_thread):
    """A prompt dict: diffusers interpolates it under FreeNoise (a window as long as the clip changes nothing
    else); and FreeNoise's windows on a 16-frame video. diffusers' video start is not rescheduled, nor is ours."""
    from animatediff.pipeline import FreeNoise

    ours = make_pipeline("v2")
    video = _video(16)
    args = {**ARGS, "num_inference_steps": 4, "strength": 0.75}
    reference = _reference(ours, motion_adapter=True)
    reference.enable_free_noise(context_length=6, context_stride=4)
    travel = {0: PROMPT, 3: "a blue square", 5: "a green cross"}
    expected = reference(prompt=travel, video=video[:6], **args, generator=_seed(), output_type="np").frames
    got = ours(travel, video=video[:6], num_frames=6, **args, seed=7, progress=False)
    print(f"prompt travel: max |ours - diffusers| = {np.abs(got - expected).max():.2e}")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    plain = ours(PROMPT, video=video[:6], num_frames=6, **args, seed=7, progress=False)
    assert np.abs(got - plain).max() > 1e-2  # the travel changed the video

    reference = _reference(ours, motion_adapter=True)
    reference.enable_free_noise(8, 4, "pyramid", "shuffle_context")
    expected = reference(prompt=PROMPT, video=video, **args, generator=_seed(), output_type="np").frames
    free_noise = FreeNoise(8, 4, "pyramid", "shuffle_context")
    got = ours(PROMPT, video=video, num_frames=16, **args, seed=7, progress=False, free_noise=free_noise)
    print(f"FreeNoise: max |ours - diffusers| = {np.abs(got - expected).max():.2e}")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_free_init_at_strength_one_matches_diffusers_and_is_refused_below(make_pipeline, one_thread):
    """At strength 1 the noised video is FreeInit's initial noise, as in diffusers. Below 1 diffusers applies the
    strength again inside every iteration (its runs shrink); we refuse, in one line, before any work."""
    ours = make_pipeline("v2")
    reference = _reference(ours)
    reference.enable_free_init(num_iters=2)
    video = _video()
    expected = reference(prompt=PROMPT, video=video, strength=1.0, **ARGS, generator=_seed(), output_type="np").frames
    config = FreeInit(iterations=2)
    got = ours(PROMPT, video=video, strength=1.0, num_frames=6, **ARGS, seed=7, progress=False, free_init=config)
    print(f"FreeInit at strength 1: max |ours - diffusers| = {np.abs(got - expected).max():.2e}")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    plain = ours(PROMPT, video=video, strength=1.0, num_frames=6, **ARGS, seed=7, progress=False)
    assert np.abs(got - plain).max() > 1e-2
    with pytest.raises(InputError, match="FreeInit .* strength 0.5"):
        ours(PROMPT, video=video, strength=0.5, num_frames=6, **ARGS, progress=False, free_init=config)


def test_the_start_is_the_encoded_video_noised_to_the_first_timestep(make_pipeline, one_thread):
    """`video_start` alone: the posterior sample times the scaling factor, plus one randn in (b, f, c, h, w)
    order, mixed at the first of the timesteps the strength leaves."""
    pipe = make_pipeline()
    pipe.vae.config.scaling_factor = 0.5  # not 1, so that a missing factor shows
    video, scheduler = _video(3), make_scheduler("ddim")
    generator = _seed(3)
    timesteps, latents, _, _ = video_start(pipe.vae, scheduler, VideoClip(video, 0.6), 10, 1, generator)
    torch.testing.assert_close(timesteps, sampling_timesteps(make_scheduler("ddim"), 10, 0.6))
    assert len(timesteps) == 6
    generator = _seed(3)
    clean = encode_video(pipe.vae, video, 1, generator)
    pixels = torch.from_numpy(video).permute(0, 3, 1, 2) * 2 - 1
    posterior = pipe.vae.encode(pixels).latent_dist
    torch.testing.assert_close(clean[0], posterior.sample(_seed(3)) * 0.5)
    noise = torch.randn(clean.shape, generator=generator)
    alpha = scheduler.alphas_cumprod[int(timesteps[0])]
    expected = (alpha.sqrt() * clean + (1 - alpha).sqrt() * noise).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(latents, expected)


class _Recorder:
    """A condition that adds nothing and records which frames and timesteps the UNet is asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, tuple[int, ...]]] = []

    def unet_kwargs(self, x, t, text, frames) -> dict:  # noqa: ANN001
        self.calls.append((int(t), tuple(int(f) for f in frames)))
        return {}


def test_context_windows_and_conditions_run_the_strengths_timesteps_over_every_frame(make_pipeline, one_thread):
    """A 40-frame video (longer than the module's 32 positions) in windows of 16: every step is one of the
    strength's timesteps and its windows cover every frame; a condition sees each window's frames."""
    pipe = make_pipeline()
    recorder = _Recorder()
    video = _video(80)
    got = pipe(
        PROMPT, video=video, video_stride=2, strength=0.5, num_frames=40, num_inference_steps=4, context_length=16,
        context_overlap=4, conditions=[recorder], progress=False, seed=1,
    )  # fmt: skip
    assert got.shape == (1, 40, 16, 16, 3)
    expected = [int(t) for t in sampling_timesteps(make_scheduler("ddim"), 4, 0.5)]
    assert sorted({t for t, _ in recorder.calls}, reverse=True) == expected == [251, 1]
    for t in expected:
        covered = set().union(*(set(frames) for step, frames in recorder.calls if step == t))
        assert covered == set(range(40))
    assert {len(frames) for _, frames in recorder.calls} == {16}
    even = pipe(PROMPT, video=video[::2], strength=0.5, num_frames=40, num_inference_steps=4, context_length=16,
                context_overlap=4, progress=False, seed=1)  # fmt: skip
    np.testing.assert_array_equal(got, even)  # video_stride 2 takes frames 0, 2, 4, …


def test_without_a_video_nothing_changes_and_bad_video_options_are_input_errors(make_pipeline, one_thread):
    pipe = make_pipeline()
    args = dict(num_frames=3, num_inference_steps=2, progress=False)
    plain = pipe(PROMPT, **args, seed=1)
    np.testing.assert_array_equal(pipe(PROMPT, **args, seed=1, video=None, strength=None), plain)
    video = _video(3)
    for kwargs, message in [
        (dict(strength=0.5), "strength 0.5 needs a video"),
        (dict(video=video, strength=0.0), r"strength must be in \(0, 1\], got 0.0"),
        (dict(video=video, strength=1.5), r"strength must be in \(0, 1\], got 1.5"),
        (dict(video=video, strength=0.4), "strength 0.4 leaves no step of 2 to run"),
        (dict(video=video, latents=torch.zeros(1, 4, 3, 8, 8)), "a video or latents"),
        (dict(video=video[:2]), "the video has 2 frames, but 3 frames at stride 1 need 3"),
        (dict(video=video, video_stride=0), "video_stride must be an integer of at least 1"),
        (dict(video=video * 2), r"float frames must be finite and in \[0, 1\]"),
    ]:
        with pytest.raises(InputError, match=message):
            pipe(PROMPT, **args, **kwargs)


def test_on_the_embedded_world_a_lower_strength_keeps_more_of_the_input(one_thread):
    """A rendered red circle moving right, re-drawn under its own caption: the output departs from the input the
    more the higher the strength, and at 0.3 still moves right by more than 0.2 of the side (the input: 0.28)."""
    from animatediff.world.layout import EMBEDDED
    from animatediff.world.metrics import displacement, motion_correct, track
    from animatediff.world.render import render_video
    from animatediff.world.scenes import SceneSpec

    pipe = AnimationPipeline.from_pretrained(EMBEDDED / "base", EMBEDDED / "motion_module.safetensors")
    spec = SceneSpec("circle", "red", "blue", motion="right", amount=0.3, x=0.3, y=0.5)
    clip = render_video(spec, 16, 32).frames.astype(np.float32) / 255.0
    args = dict(video=clip, video_stride=2, num_frames=8, num_inference_steps=10, seed=0, progress=False)
    outputs = {s: pipe(spec.caption(), strength=s, **args)[0] for s in (0.3, 0.7)}
    distance = {s: np.abs(out - clip[::2]).mean() for s, out in outputs.items()}
    assert distance[0.3] < distance[0.7]
    assert motion_correct(track(outputs[0.3]), "right")
    assert displacement(track(outputs[0.3]))[0] > 0.2
