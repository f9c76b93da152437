"""`generate --count N`: N clips with the models loaded once, seeds SEED … SEED+N−1 (A1111's batch count), each
written under the output's name with its seed, and each the clip that seed alone draws."""

import numpy as np
from PIL import Image, ImageSequence

from animatediff.cli import main
from animatediff.io.video import seeded_path

ARGS = ["generate", "--prompt", "a red circle moving right on a blue background", "--frames", "2", "--steps", "1",
        "--quiet"]  # fmt: skip


def frames(path) -> np.ndarray:  # noqa: ANN001
    return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))])


def test_count_draws_the_next_seeds_each_as_alone(tmp_path, one_thread, capsys):
    assert main([*ARGS, "--seed", "5", "--count", "2", "--output", str(tmp_path / "a.gif")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-5.gif", "a-6.gif"]
    assert main([*ARGS, "--seed", "6", "--output", str(tmp_path / "alone.gif")]) == 0
    np.testing.assert_array_equal(frames(tmp_path / "a-6.gif"), frames(tmp_path / "alone.gif"))
    assert main([*ARGS, "--count", "0", "--output", str(tmp_path / "b.gif")]) == 2
    assert "--count must be at least 1, got 0" in capsys.readouterr().err


def test_seeded_paths():
    assert seeded_path("out/circle.gif", 5).as_posix() == "out/circle-5.gif"
    assert seeded_path("out/frames", 7).as_posix() == "out/frames-7"
