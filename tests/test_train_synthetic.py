"""The in-memory training clips, plus the helpers the other training tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from animatediff.data.synthetic import MovingSquares
from animatediff.train.config import TrainConfig, config_from_dict


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps one state (mixed precision, CPU) per process; each training test starts from a clean one."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def train_config(base_folder: Path, output_dir: Path, **sections) -> TrainConfig:
    """A config for the tiny base: 4-frame 16-px synthetic clips, batch 2, no trackers, no progress bar."""
    values = {
        "output_dir": str(output_dir),
        "cpu": True,
        "model": {"base": str(base_folder)},
        "data": {"kind": "synthetic", "num_frames": 4, "resolution": 16, "num_workers": 0, "synthetic_clips": 8},
        "optim": {"batch_size": 2, "max_steps": 3, "learning_rate": 1e-3},
        "logging": {"report_to": "none", "progress": False},
        "checkpoint": {"every": 0, "keep_last": 0},
    }
    return config_from_dict(merge(values, sections))


def test_items_follow_the_data_contract():
    data = MovingSquares(num_clips=3, num_frames=5, size=16, seed=7)
    item = data[1]
    assert item["pixel_values"].shape == (5, 3, 16, 16)
    assert item["pixel_values"].dtype == torch.float32
    assert -1.0 <= item["pixel_values"].min() and item["pixel_values"].max() <= 1.0
    assert item["text"].startswith("a ") and "square moving" in item["text"]


def test_clips_are_reproducible_and_move():
    a, b = MovingSquares(4, 6, 16, seed=3), MovingSquares(4, 6, 16, seed=3)
    assert torch.equal(a[2]["pixel_values"], b[2]["pixel_values"])
    frames = a[2]["pixel_values"]
    assert not torch.equal(frames[0], frames[-1])  # the square moved
    assert not torch.equal(a[0]["pixel_values"], MovingSquares(4, 6, 16, seed=4)[0]["pixel_values"])


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="MovingSquares"):
        MovingSquares(num_clips=0)
