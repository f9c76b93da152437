"""Moving squares drawn in memory: a video dataset for smoke tests and benchmarks, no files needed.

Items follow the training-data contract of `animatediff.data`: {"pixel_values": (f, 3, H, W) in [-1, 1],
"text": caption}. Clip i is fully determined by (seed, i), so runs are reproducible in any worker.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

COLORS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0), "white": (1.0, 1.0, 1.0)}
DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


class MovingSquares(Dataset):
    """A square of one colour sliding across a dark background, one pixel step per frame."""

    def __init__(self, num_clips: int = 64, num_frames: int = 16, size: int = 32, seed: int = 0) -> None:
        if num_clips < 1 or num_frames < 1 or size < 8:
            raise ValueError(
                f"MovingSquares needs num_clips ≥ 1, num_frames ≥ 1, size ≥ 8 (got {num_clips}, {num_frames}, {size})"
            )
        self.num_clips, self.num_frames, self.size, self.seed = num_clips, num_frames, size, seed

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        color_name = list(COLORS)[int(torch.randint(len(COLORS), (1,), generator=g))]
        direction = list(DIRECTIONS)[int(torch.randint(len(DIRECTIONS), (1,), generator=g))]
        side = self.size // 4
        y0, x0 = (int(v) for v in torch.randint(0, self.size - side, (2,), generator=g))
        dy, dx = DIRECTIONS[direction]
        step = max(1, self.size // (2 * self.num_frames))
        frames = torch.full((self.num_frames, 3, self.size, self.size), -0.8)
        color = torch.tensor(COLORS[color_name]).view(3, 1, 1)
        for t in range(self.num_frames):
            # The square wraps around the edges, so it keeps moving for any clip length.
            ys = [(y0 + dy * step * t + k) % self.size for k in range(side)]
            xs = [(x0 + dx * step * t + k) % self.size for k in range(side)]
            frames[t][:, torch.tensor(ys)[:, None], torch.tensor(xs)[None, :]] = color
        return {"pixel_values": frames, "text": f"a {color_name} square moving {direction}"}
