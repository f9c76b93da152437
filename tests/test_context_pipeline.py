"""Context schedules through the pipeline: the windows each step runs, one window as the plain pipeline, the keyword
forms, bad input, and what grows with the clip."""

import numpy as np
import pytest

from animatediff.errors import InputError
from animatediff.sampling.context import ContextSchedule

RUN = dict(num_inference_steps=3, seed=0, progress=False)


class Windows:
    """A condition that adds nothing and records the frames of each UNet call, per call."""

    def __init__(self) -> None:
        self.calls = []

    def unet_kwargs(self, x, t, text, frames):  # noqa: ANN001, ANN201
        self.calls.append((int(t), frames.tolist()))
        return {}

    def by_step(self) -> list[list[list[int]]]:
        steps = {}
        for t, frames in self.calls:
            steps.setdefault(t, []).append(frames)
        return list(steps.values())


@pytest.mark.parametrize(
    "context",
    [
        dict(context_length=8, context_schedule="uniform", context_stride=2, context_fuse="relative"),
        dict(context=ContextSchedule(8, schedule="looped", fuse="overlap-linear")),
        dict(context_length=16, context_schedule="uniform", closed_loop=True, context_fuse="flat"),
    ],
)
def test_one_window_holding_the_clip_is_the_plain_pipeline(make_pipeline, one_thread, context):
    pipe = make_pipeline()
    plain = pipe("a cat", num_frames=8, **RUN)
    np.testing.assert_array_equal(pipe("a cat", num_frames=8, **context, **RUN), plain)


def test_each_schedule_runs_its_windows_at_every_step(make_pipeline, one_thread):
    pipe = make_pipeline()
    runs = {}
    for schedule, stride in (("static", 1), ("uniform", 2), ("looped", 1)):
        seen = Windows()
        frames = pipe("a cat", num_frames=20, context=ContextSchedule(8, 2, stride, schedule), conditions=[seen], **RUN)
        assert frames.shape[1] == 20 and np.isfinite(frames).all()
        steps = seen.by_step()
        assert len(steps) == 3
        for step, windows in enumerate(steps):
            assert windows == ContextSchedule(8, 2, stride, schedule).windows(20, step)
            assert max(len(w) for w in windows) == 8
        runs[schedule] = (steps, frames)
    assert runs["static"][0][0] == runs["static"][0][1] == runs["static"][0][2]
    assert runs["uniform"][0][0] != runs["uniform"][0][1]  # the uniform windows move
    assert any(0 in w and 19 in w for w in runs["looped"][0][0])  # the loop closes: the last frame meets the first
    assert not np.array_equal(runs["static"][1], runs["looped"][1])


def test_keywords_and_a_context_schedule_are_the_same_run(make_pipeline, one_thread):
    pipe = make_pipeline()
    a = pipe("a cat", num_frames=12, context_length=6, context_overlap=2, context_schedule="uniform", **RUN)
    b = pipe("a cat", num_frames=12, context=ContextSchedule(6, 2, schedule="uniform"), **RUN)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(context=ContextSchedule(8), context_length=8), "give one or the other"),
        (dict(context_schedule="looped"), "context windows need a context_length"),
        (dict(closed_loop=True), "context windows need a context_length"),
        (dict(context=ContextSchedule(40)), "context_length 40: the motion module sees at most 32 frames"),
        (dict(context_length=8, context_fuse="gauss"), "unknown context fuse 'gauss'"),
        (dict(context_length=8, context_overlap=8), "context overlap 8 must be from 0"),
    ],
)
def test_bad_context_options_fail_before_sampling(make_pipeline, kwargs, message):
    pipe = make_pipeline()
    calls = []
    pipe.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(InputError, match=message):
        pipe("a cat", num_frames=20, **kwargs, **RUN)
    assert calls == []


def test_only_the_latents_grow_with_the_clip(make_pipeline, one_thread, monkeypatch):
    """The UNet never sees more than a window's frames (the fused accumulators are latent-sized), and the VAE
    decodes at most `decode_chunk_size` frames at a time."""
    pipe = make_pipeline()
    unet_frames, vae_frames = [], []
    pipe.unet.register_forward_pre_hook(lambda unet, args: unet_frames.append(args[0].shape[2]))
    decode = pipe.vae.decode
    monkeypatch.setattr(pipe.vae, "decode", lambda z, *a, **k: vae_frames.append(z.shape[0]) or decode(z, *a, **k))
    pipe("a cat", num_frames=40, context_length=8, decode_chunk_size=6, num_inference_steps=1, progress=False)
    assert max(unet_frames) == 8 and len(unet_frames) == len(ContextSchedule(8).windows(40))
    assert max(vae_frames) == 6 and sum(vae_frames) == 40
