import numpy as np
import pytest
import torch

from animatediff.sampling.context import context_windows, window_weights, windowed


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

    out = windowed(predict, 10, length=6, overlap=2)(x, torch.tensor(1), torch.zeros(1, 3, 2), torch.arange(10))
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
    windowed(predict, 10, length=6, overlap=2)(torch.zeros(1, 1, 10, 1, 1), torch.tensor(1), ctx, torch.arange(10))
    assert seen == indices == [[0, 1, 2, 3, 4, 5], [4, 5, 6, 7, 8, 9]]


def test_pipeline_makes_clips_longer_than_the_position_encoding(make_pipeline):
    pipe = make_pipeline()
    with pytest.raises(ValueError, match="context length"):
        pipe("a cat", num_frames=40, num_inference_steps=1, progress=False)
    frames = pipe("a cat", num_frames=40, num_inference_steps=2, seed=0, context_length=16, progress=False)
    assert frames.shape[1] == 40 and np.isfinite(frames).all()
    # A window covering the whole clip is the plain pipeline.
    a = pipe("a cat", num_frames=8, num_inference_steps=2, seed=0, progress=False)
    b = pipe("a cat", num_frames=8, num_inference_steps=2, seed=0, context_length=16, progress=False)
    np.testing.assert_array_equal(a, b)
