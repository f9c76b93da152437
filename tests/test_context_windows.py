import numpy as np
import pytest
import torch

from animatediff.sampling.context import ContextSchedule, context_windows, window_weights, windowed


def test_static_schedule_covers_every_frame_and_snaps_to_the_end():
    assert context_windows(16, 16, 4) == [list(range(16))]
    windows = context_windows(40, 16, 4)
    assert [w[0] for w in windows] == [0, 12, 24]
    assert all(len(w) == 16 for w in windows) and windows[-1][-1] == 39
    assert set(sum(windows, [])) == set(range(40))
    with pytest.raises(ValueError, match="overlap"):
        context_windows(40, 8, 8)


def test_pyramid_weights():
    assert window_weights(6).tolist() == [1, 2, 3, 3, 2, 1]
    assert window_weights(5).tolist() == [1, 2, 3, 2, 1]
    assert window_weights(4, "flat").tolist() == [1, 1, 1, 1]


def test_fusion_is_a_weighted_mean_of_window_predictions():
    # A predictor that depends on which window it sees: frame value + window start.
    x = torch.zeros(1, 1, 10, 1, 1)
    calls = []

    def predict(xw, t, ctx, frames):
        calls.append(xw.shape[2])
        return torch.full_like(xw, float(len(calls)))

    out = windowed(predict, 10, ContextSchedule(6, 2))(x, torch.tensor(1), torch.zeros(1, 3, 2), torch.arange(10))
    assert calls == [6, 6]  # windows [0..5], [4..9]
    w = window_weights(6)
    # Frames 4 and 5 are in both windows: weighted means of 1 and 2.
    assert out[0, 0, 4, 0, 0].item() == pytest.approx((w[4] * 1 + w[0] * 2) / (w[4] + w[0]))
    assert out[0, 0, 0, 0, 0].item() == 1 and out[0, 0, 9, 0, 0].item() == 2


def test_per_frame_text_and_frame_indices_follow_their_frames():
    seen, indices = [], []

    def predict(xw, t, ctx, frames):
        seen.append(ctx[0, :, 0, 0].tolist())
        indices.append(frames.tolist())
        return xw

    ctx = torch.arange(10.0).view(1, 10, 1, 1).expand(1, 10, 3, 2)
    windowed(predict, 10, ContextSchedule(6, 2))(torch.zeros(1, 1, 10, 1, 1), torch.tensor(1), ctx, torch.arange(10))
    assert seen == indices == [[0, 1, 2, 3, 4, 5], [4, 5, 6, 7, 8, 9]]


def test_pipeline_makes_clips_longer_than_the_position_encoding(make_pipeline, one_thread):
    pipe = make_pipeline()
    with pytest.raises(ValueError, match="context length"):
        pipe("a cat", num_frames=40, num_inference_steps=1, progress=False)
    frames = pipe("a cat", num_frames=40, num_inference_steps=2, seed=0, context_length=16, progress=False)
    assert frames.shape[1] == 40 and np.isfinite(frames).all()
    # A window covering the whole clip is the plain pipeline.
    a = pipe("a cat", num_frames=8, num_inference_steps=2, seed=0, progress=False)
    b = pipe("a cat", num_frames=8, num_inference_steps=2, seed=0, context_length=16, progress=False)
    np.testing.assert_array_equal(a, b)


def test_fuse_weights_follow_their_formulas():
    tent = [0.01, 1 - 1.5 / 2.505, 1 - 0.5 / 2.505]  # max(0.01, 1 − |k − c| / (c + 0.005)), c = 2.5
    assert window_weights(6, "relative").tolist() == pytest.approx(tent + tent[::-1])
    linear = ContextSchedule(6, 3, fuse="overlap-linear")
    assert linear.weights(list(range(6)), 12).tolist() == pytest.approx([1, 1, 1, 1, 0.5, 1e-6])  # first: no left ramp
    assert linear.weights(list(range(3, 9)), 12).tolist() == pytest.approx([1e-6, 0.5, 1, 1, 0.5, 1e-6])
    assert linear.weights(list(range(6, 12)), 12).tolist() == pytest.approx([1e-6, 0.5, 1, 1, 1, 1])
    looped = ContextSchedule(6, 3, schedule="looped", fuse="overlap-linear")  # no clip ends in a loop
    assert looped.weights(list(range(6)), 12).tolist() == pytest.approx([1e-6, 0.5, 1, 1, 0.5, 1e-6])
    assert ContextSchedule(6, 0, fuse="overlap-linear").weights(list(range(3, 9)), 12).tolist() == [1] * 6
    assert ContextSchedule(6, 1, fuse="overlap-linear").weights(list(range(3, 9)), 12).tolist() == pytest.approx(
        [1e-6, 1, 1, 1, 1, 1]
    )


@pytest.mark.parametrize("fuse", ["flat", "pyramid", "overlap-linear", "relative"])
@pytest.mark.parametrize("schedule, stride, closed", [("static", 1, False), ("looped", 1, True), ("uniform", 2, False)])
def test_fused_predictions_are_the_weighted_means_they_claim(fuse, schedule, stride, closed):
    context = ContextSchedule(6, 2, stride, schedule, fuse, closed)
    num_frames, timesteps = 17, torch.tensor([900, 500, 100])
    seen = []

    def predict(xw, t, ctx, frames):  # each window predicts its own number, plus the frame's index / 100
        seen.append(frames.tolist())
        return torch.full_like(xw, float(len(seen))) + frames.view(1, 1, -1, 1, 1) / 100

    run = windowed(predict, num_frames, context, timesteps=timesteps)
    out = run(torch.zeros(1, 1, num_frames, 1, 1), timesteps[1], torch.zeros(1, 3, 2), torch.arange(num_frames))
    windows = context.windows(num_frames, step=1)
    assert seen == windows
    for f in range(num_frames):
        pairs = [(context.weights(w, num_frames)[w.index(f)].item(), i + 1) for i, w in enumerate(windows) if f in w]
        expected = sum(w * v for w, v in pairs) / sum(w for w, _ in pairs) + f / 100
        assert out[0, 0, f, 0, 0].item() == pytest.approx(expected, rel=1e-5)


def test_the_step_is_looked_up_from_t_so_a_rerun_gets_the_same_windows():
    context = ContextSchedule(4, 1, 2, "uniform")
    timesteps = torch.tensor([999, 749, 499, 249])
    seen = []

    def predict(xw, t, ctx, frames):
        seen.append(frames.tolist())
        return xw

    run = windowed(predict, 13, context, timesteps=timesteps)
    x, text, frames = torch.zeros(1, 1, 13, 1, 1), torch.zeros(1, 3, 2), torch.arange(13)
    by_step = []
    for t in [*timesteps, *timesteps, torch.tensor(500)]:  # the loop twice (FreeInit), then a t off the list
        seen.clear()
        run(x, t, text, frames)
        by_step.append(list(seen))
    assert by_step[:4] == [context.windows(13, step) for step in range(4)]
    assert by_step[4:8] == by_step[:4] and by_step[8] == by_step[2]  # 500 is nearest to step 2's 499
    assert len({str(w) for w in by_step[:4]}) == 4  # the windows move from step to step


def test_static_windows_and_weights_are_diffusers_free_noise_ones():
    """diffusers' FreeNoise windows (starts every length − overlap frames, the frames past the last one given to a
    window ending on the clip's last frame) and its flat / pyramid frame weights."""
    from diffusers.models.attention import FreeNoiseTransformerBlock

    for length in (3, 4, 5, 8, 16):
        for fuse in ("flat", "pyramid"):
            expected = FreeNoiseTransformerBlock._get_frame_weights(None, length, fuse)
            assert window_weights(length, fuse).tolist() == expected
        for overlap in range(length):
            block = type("Block", (), {"context_length": length, "context_stride": length - overlap})()
            for num_frames in range(length + 1, 3 * length):
                spans = FreeNoiseTransformerBlock._get_frame_indices(block, num_frames)
                if spans[-1][1] < num_frames:
                    spans.append((num_frames - length, num_frames))
                assert context_windows(num_frames, length, overlap) == [list(range(a, b)) for a, b in spans]
