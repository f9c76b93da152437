"""The model-free annotators (`pipeline/annotators.py`): line art and the colour grid as their references compute
them (SciPy's Gaussian filter in place of OpenCV's for the line art), the CLI's list the pipeline's, and a control
video annotated through the CLI."""

import numpy as np
import pytest
from scipy import ndimage

from animatediff.pipeline import annotators

pytest.importorskip("cv2")


def _frames(seed: int = 0, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """Smooth shapes with edges: a few discs and bars on a gradient, (2, H, W, 3) in [0, 1]."""
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    frames = []
    for _ in range(2):
        frame = np.stack([x / w, y / h, np.full((h, w), 0.5)], axis=-1) * 0.6
        for _ in range(4):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(6, 20)
            frame[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.random(3)
        frame[:, rng.integers(0, w - 4) :][:, :3] = 0.05  # a dark bar
        frames.append(frame)
    return np.stack(frames).astype(np.float32)


def test_line_art_is_lineart_standards_formula():
    frames = _frames()
    got = annotators.lineart(frames)
    for frame, lines in zip(frames, got):
        pixels = (frame * 255).round().astype(np.float32)
        blurred = ndimage.gaussian_filter(pixels, sigma=(6, 6, 0), mode="mirror", truncate=4.0)  # OpenCV's border
        darker = np.clip((blurred - pixels).min(axis=2), 0, 255)
        darker = darker / max(16.0, float(np.median(darker[darker > 8]))) * 127
        expected = np.clip(darker, 0, 255).astype(np.uint8) / 255.0
        # at most one step of 255 apart (the two blurs differ in the last bits, which the truncation to uint8 shows)
        assert np.abs(lines[..., 0] - expected).max() <= 1 / 255 + 1e-6
        assert np.abs(lines[..., 0] - expected).mean() < 0.25 / 255
        assert np.array_equal(lines[..., 0], lines[..., 2])
    assert got.max() > 0.4 and np.mean(got > 0.1) < 0.3  # lines, not a wash


def test_the_colour_grid_is_blocks_of_the_frames_colours():
    frames = _frames(1, (128, 192))
    grid = annotators.colour_grid(frames)
    blocks = grid.reshape(2, 2, 64, 3, 64, 3)
    assert np.allclose(blocks, blocks[:, :, :1, :, :1])  # constant over each 64 × 64 block
    flat = np.repeat(np.repeat(np.random.default_rng(2).random((1, 2, 3, 3)), 64, 1), 64, 2).astype(np.float32)
    np.testing.assert_allclose(annotators.colour_grid(flat), np.round(flat * 255) / 255, atol=1.5 / 255)
    assert annotators.colour_grid(frames[:, :40, :40]).shape == (2, 40, 40, 3)  # smaller than a block: one colour


def test_the_clis_list_is_the_pipelines_and_annotate_routes_by_name():
    from animatediff.cli import controlnet_options

    assert controlnet_options.ANNOTATORS == annotators.ANNOTATORS
    frames = _frames()
    for name, made in (("canny", annotators.canny), ("lineart", annotators.lineart), ("color", annotators.colour_grid)):
        np.testing.assert_array_equal(annotators.annotate(frames, name), made(frames))
    assert annotators.annotate(frames, "none") is frames
