"""`animatediff generate` as the CLI tests call it: a 4-frame clip of "a fox" from given models, and its one-line
errors before any model loads; and what a `run` drew, read back from its GIF."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from animatediff.cli import main
from animatediff.io.video import save_video
from animatediff.pipeline import AnimationPipeline


def generate(base: Path | str, motion: Path | str, out: Path | str, *extra: str, steps: int = 4) -> int:
    """`generate`'s exit status for a 4-frame clip of "a fox" at seed 3, with `extra` options."""
    args = ["generate", "--base", str(base), "--motion-module", str(motion), "--quiet", "--prompt", "a fox"]
    return main([*args, "--frames", "4", "--steps", str(steps), "--seed", "3", "--output", str(out), *extra])


def generate_error(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *extra: str) -> str:
    """The one line `generate` with `extra` options fails with (exit status 2) before any model loads."""
    monkeypatch.setattr(AnimationPipeline, "from_pretrained", lambda *a, **k: pytest.fail("models loaded"))
    assert generate(tmp_path / "no-base", tmp_path / "no-module", tmp_path / "o.npy", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def gif_frames(path: Path | str) -> np.ndarray:
    """A GIF's frames as RGB uint8, (frames, height, width, 3)."""
    return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))])


def assert_run_drew(runs: Path, expected: np.ndarray, tmp_path: Path) -> None:
    """The first video a run of `entry.yaml` wrote under `runs` is `expected` (frames in [0, 1]) written as a GIF."""
    (drawn,) = runs.glob("entry-*/sample/0-*.gif")
    written = save_video(expected, tmp_path / "expected.gif", fps=8)
    np.testing.assert_array_equal(gif_frames(drawn), gif_frames(written))


def generate_controlled(base: Path, motion: Path, controlnet: str, images: np.ndarray, tmp_path: Path) -> np.ndarray:
    """What `generate` draws for "a fox" (2 steps, seed 2) at the images' size with `--controlnet CONTROLNET` over
    `images` (uint8 frames, written as a folder of PNGs): `pipe("a fox", None, **controlled_call(images))`'s."""
    (tmp_path / "frames").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "frames" / f"{i:04d}.png")
    frames, height, width = images.shape[:3]
    args = ["generate", "--base", str(base), "--motion-module", str(motion), "--prompt", "a fox", "--steps", "2"]
    args += ["--frames", str(frames), "--width", str(width), "--height", str(height), "--seed", "2", "--quiet"]
    controls = ["--controlnet", controlnet, "--control-frames", str(tmp_path / "frames")]
    assert main([*args, *controls, "--output", str(tmp_path / "o.npy")]) == 0
    return np.load(tmp_path / "o.npy")


def controlled_call(images: np.ndarray) -> dict:
    """The pipeline keywords of `generate_controlled`'s clip (its ControlNets apart)."""
    frames, height, width = images.shape[:3]
    return dict(num_frames=frames, height=height, width=width, num_inference_steps=2, seed=2, progress=False)
