"""Clip sampling (official stride rule), flip, resize + center crop, range, and the item contract."""

import numpy as np
import pytest
import torch

from animatediff.data.clips import ClipConfig, clip_indices, item_rng, load_clip, resize_center_crop, transform_clip
from animatediff.data.synthetic import decode_frame_index, write_synthetic_video
from animatediff.data.video_reader import VideoReadError


def test_long_video_gets_stride_4_from_a_random_start():
    config = ClipConfig()
    starts = set()
    for seed in range(50):
        indices = clip_indices(300, config, np.random.default_rng(seed))
        assert len(indices) == 16 and np.all(np.diff(indices) == 4)
        assert 0 <= indices[0] and indices[-1] < 300
        starts.add(int(indices[0]))
    assert len(starts) > 20


def test_short_video_gets_a_smaller_spacing_over_the_whole_video():
    indices = clip_indices(31, ClipConfig(), np.random.default_rng(0))  # 16 frames at stride 4 need 61
    assert indices[0] == 0 and indices[-1] == 30 and len(set(indices.tolist())) == 16
    assert np.all(np.diff(indices) >= 1) and np.all(np.diff(indices) <= 2)


def test_video_below_min_frames_is_too_short():
    with pytest.raises(VideoReadError) as info:
        clip_indices(15, ClipConfig(), np.random.default_rng(0))
    assert info.value.reason == "too_short"
    # Lowering min_frames accepts it, repeating frames as the official code does.
    indices = clip_indices(8, ClipConfig(min_frames=8), np.random.default_rng(0))
    assert len(indices) == 16 and set(indices.tolist()) == set(range(8))


def test_resize_center_crop_keeps_the_middle():
    frames = np.zeros((2, 40, 80, 3), dtype=np.uint8)
    frames[:, :, 20:60] = 255  # the central 40×40 square is white, the sides black
    video = resize_center_crop(frames, 20)
    assert video.shape == (2, 3, 20, 20)
    assert torch.allclose(video, torch.ones_like(video))


def test_transform_range_shape_and_flip():
    frames = np.zeros((3, 32, 48, 3), dtype=np.uint8)
    frames[:, :, 8:24] = 255  # bright on the left half of the central 32×32 crop
    config = ClipConfig(num_frames=3, size=16)
    flips = []
    for seed in range(40):
        video = transform_clip(frames, config, np.random.default_rng(seed))
        assert video.shape == (3, 3, 16, 16) and video.dtype == torch.float32
        assert video.min() >= -1 and video.max() <= 1
        assert torch.allclose(video[0], video[1])  # one flip for the whole clip
        left, right = video[..., :8].mean(), video[..., 8:].mean()
        flips.append(bool(right > left))
    assert 10 < sum(flips) < 30
    unflipped = transform_clip(frames, ClipConfig(num_frames=3, size=16, flip=False), np.random.default_rng(0))
    assert unflipped[..., :8].mean() > 0.9 and unflipped[..., 8:].mean() < -0.9


def test_load_clip_item_contract(tmp_path):
    path = write_synthetic_video(tmp_path / "v.mp4", num_frames=100, index_coded=True)
    config = ClipConfig(num_frames=4, stride=5, size=16, flip=False)
    item = load_clip(path, "a caption", config, item_rng(3, 0, 7))
    assert set(item) == {"pixel_values", "text"} and item["text"] == "a caption"
    assert item["pixel_values"].shape == (4, 3, 16, 16) and item["pixel_values"].dtype == torch.float32
    # Back to uint8 at full size, the frames carry indices 5 apart; the same item RNG draws the same start.
    starts = set()
    for seed in (3, 3, 4, 5):
        full = load_clip(path, "", ClipConfig(num_frames=4, stride=5, size=32, flip=False), item_rng(seed, 0, 7))
        pixels = ((full["pixel_values"] + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        indices = [decode_frame_index(f) for f in pixels]
        assert np.all(np.diff(indices) == 5) and indices[-1] < 100
        starts.add((seed, indices[0]))
    assert len({seed for seed, _ in starts}) == 3 == len(starts)  # seed 3 twice gave one start


def test_item_rng_is_fixed_by_seed_epoch_key():
    assert item_rng(1, 2, 3).random() == item_rng(1, 2, 3).random()
    assert item_rng(1, 2, "key").random() == item_rng(1, 2, "key").random()
    assert item_rng(1, 2, 3).random() != item_rng(1, 3, 3).random()


@pytest.mark.parametrize("field,value", [("num_frames", 0), ("stride", 0), ("size", 4), ("min_frames", 0)])
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        ClipConfig(**{field: value})
