"""`animatediff generate --free-init ITERS ...`: the frames of `pipe(..., free_init=FreeInit(...))`, and bad
settings as one line before anything loads."""

import dataclasses
import re

import numpy as np
import pytest

from animatediff.cli import build_parser, free_init_options
from animatediff.formats import save_motion_modules
from animatediff.pipeline import AnimationPipeline
from animatediff.sampling import FreeInit
from animatediff.sampling.free_init import FILTERS
from tests.cli_helpers import generate, generate_error
from tests.tiny import tiny_motion


def _generate(base, motion, out, *extra: str) -> int:  # noqa: ANN001
    return generate(base, motion, out, *extra, steps=2)


def test_the_cli_samples_what_the_api_samples(tmp_path, base_folder, one_thread):
    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    extra = ["--free-init", "2", "--free-init-filter", "box", "--free-init-spatial-stop", "0.5", "--free-init-fast"]
    assert _generate(base_folder, motion, tmp_path / "o.npy", *extra) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    config = FreeInit(iterations=2, filter="box", spatial_stop=0.5, fast_sampling=True)
    expected = pipe("a fox", "", num_frames=4, num_inference_steps=2, seed=3, progress=False, free_init=config)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected)
    plain = pipe("a fox", "", num_frames=4, num_inference_steps=2, seed=3, progress=False)[0]
    assert np.abs(expected - plain).max() > 1e-2  # FreeInit changed the video


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--free-init", "0"], "FreeInit iterations must be an integer of at least 1, got 0"),
        (["--free-init", "2", "--free-init-spatial-stop", "1.5"], r"spatial_stop must be in \[0, 1\], got 1.5"),
        (["--free-init", "2", "--free-init-order", "0"], "order must be an integer of at least 1, got 0"),
        (["--free-init-filter", "box"], "--free-init-filter needs --free-init ITERS"),
        (["--free-init-fast", "--free-init-order", "2"], "--free-init-order, --free-init-fast need --free-init"),
    ],
)
def test_bad_free_init_options_fail_in_one_line_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    assert re.search(message, generate_error(tmp_path, capsys, monkeypatch, *extra))


def test_the_options_defaults_are_free_inits():
    """The parser holds its own copy of the filters and defaults (so that building it imports no torch)."""
    assert free_init_options.FILTERS == FILTERS
    defaults = {f.name: f.default for f in dataclasses.fields(FreeInit)}
    assert {k: defaults[k] for k in free_init_options.DEFAULTS} == free_init_options.DEFAULTS
    args = build_parser().parse_args(["generate", "--prompt", "p", "--free-init", "3"])
    assert free_init_options.free_init_from_args(args) == FreeInit(iterations=3)
    assert free_init_options.free_init_from_args(build_parser().parse_args(["generate", "--prompt", "p"])) is None
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["generate"].format_help().split())
    for option in ("--free-init ITERS", "--free-init-filter", "--free-init-temporal-stop F", "--free-init-fast"):
        assert option in help_text
    assert "default: butterworth" in help_text
