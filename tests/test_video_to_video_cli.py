"""`animatediff generate --video INPUT --strength S --video-stride N` and `run` entries with `video`, `strength`,
`video_stride`: the frames of `pipe(..., video=..., strength=..., video_stride=...)`, and bad input as one line
before any model loads."""

import re

import numpy as np
import pytest
import yaml

from animatediff.cli import build_parser, video_options
from animatediff.formats import save_motion_modules
from animatediff.io.video import save_video
from animatediff.model_cache import ModelCache
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.video_start import DEFAULT_STRENGTH
from animatediff.prompt_config import load_prompt_config, run_prompt_config
from tests.cli_helpers import generate, generate_error, gif_frames
from tests.tiny import tiny_motion


def _input(path, frames: int = 8):  # noqa: ANN001, ANN202
    """A GIF of `frames` frames of 24 × 20 (height × width), so that the pipeline's 16 × 16 crops it."""
    rng = np.random.default_rng(0)
    return save_video(rng.random((frames, 24, 20, 3)).astype(np.float32), path, fps=8)


def test_the_cli_samples_what_the_api_samples(tmp_path, base_folder, one_thread):
    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    video = _input(tmp_path / "in.gif")
    extra = ["--video", str(video), "--strength", "0.5", "--video-stride", "2"]
    assert generate(base_folder, motion, tmp_path / "o.npy", *extra) == 0
    assert generate(base_folder, motion, tmp_path / "default.npy", "--video", str(video)) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    args = dict(num_frames=4, num_inference_steps=4, seed=3, progress=False)
    expected = pipe("a fox", "", **args, video=video, strength=0.5, video_stride=2)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected)
    default = pipe("a fox", "", **args, video=video, strength=DEFAULT_STRENGTH)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "default.npy"), default)
    assert np.abs(expected - pipe("a fox", "", **args)[0]).max() > 1e-3  # not text-to-video


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--video", "{tmp}/missing.mp4"], "input video not found: .*missing.mp4"),
        (["--video", "{tmp}/empty"], "empty: a folder of frames holds no .png, .jpg, .jpeg images"),
        (["--video", "{tmp}/broken.mp4"], "broken.mp4: cannot decode this video"),
        (["--video", "{tmp}/in.gif", "--frames", "16"], "in.gif has 8 frames, but 16 frames at stride 1 need 16; "
         "ask for --frames 8 or fewer$"),
        (["--video", "{tmp}/in.gif", "--video-stride", "3"], "need 10; ask for --frames 3 or fewer or --video-stride "
         "2 or less"),
        (["--video", "{tmp}/in.gif", "--strength", "0"], r"--strength must be in \(0, 1\], got 0.0"),
        (["--video", "{tmp}/in.gif", "--strength", "1.5"], r"--strength must be in \(0, 1\], got 1.5"),
        (["--video", "{tmp}/in.gif", "--strength", "0.2"], "--strength 0.2 leaves no step of 4 to run"),
        (["--video", "{tmp}/in.gif", "--video-stride", "0"], "--video-stride must be at least 1, got 0"),
        (["--strength", "0.5"], "--strength needs --video INPUT or --init-image PICTURE"),
        (["--strength", "0.5", "--video-stride", "2"], "--video-stride needs --video INPUT"),
        (["--video", "{tmp}/in.gif", "--free-init", "2"], "FreeInit .* strength 0.8 .*; use strength 1"),
    ],
)  # fmt: skip
def test_bad_video_options_fail_in_one_line_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    _input(tmp_path / "in.gif")
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    err = generate_error(tmp_path, capsys, monkeypatch, *[e.replace("{tmp}", str(tmp_path)) for e in extra])
    assert re.search(message, err), err


def test_the_options_default_and_help():
    args = build_parser().parse_args(["generate", "--prompt", "p", "--video", "x.gif"])
    assert (args.strength, args.video_stride) == (None, None)
    assert video_options.DEFAULT_STRENGTH == DEFAULT_STRENGTH  # the parser's copy (it imports no torch)
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["generate"].format_help().split())
    for option in ("--video INPUT", "--strength S", "--video-stride N", f"default: {DEFAULT_STRENGTH}"):
        assert option in help_text


def test_a_run_entry_draws_what_generate_draws(tmp_path, base_folder, one_thread):
    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    _input(tmp_path / "in.gif")
    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4,
             "video": "in.gif", "strength": 0.5, "video_stride": 2}  # fmt: skip
    config = tmp_path / "entry.yaml"
    config.write_text(yaml.safe_dump([entry]))
    run_prompt_config(config, base_folder, tmp_path / "runs", ModelCache(), progress=False)
    (drawn,) = (tmp_path / "runs").glob("entry-*/sample/0-*.gif")
    extra = ["--video", str(tmp_path / "in.gif"), "--strength", "0.5", "--video-stride", "2", "--guidance-scale", "7.5"]
    assert generate(base_folder, motion, tmp_path / "generated.gif", *extra) == 0
    np.testing.assert_array_equal(gif_frames(drawn), gif_frames(tmp_path / "generated.gif"))


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"strength": 0.5}, "entry 0: strength needs a video to start from"),
        ({"video_stride": 2}, "entry 0: video_stride needs a video"),
        ({"video": "in.gif", "video_stride": 0}, "video_stride must be an integer of at least 1, got 0"),
        ({"video": "in.gif", "strength": 2}, r"entry 0: strength must be in \(0, 1\], got 2"),
        ({"video": "in.gif", "strength": 0.01, "steps": 10}, "strength 0.01 leaves no step of 10 to run"),
        ({"video": ["in.gif"]}, "video must be a path"),
    ],
)
def test_bad_run_entries_name_the_problem(tmp_path, edit, message):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump([{"motion_module": "mm.safetensors", "prompt": ["a"], **edit}]))
    with pytest.raises(ValueError, match=message):
        load_prompt_config(tmp_path / "c.yaml")


def test_a_run_entry_whose_video_is_missing_or_short_fails_before_loading(tmp_path, base_folder):
    save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    _input(tmp_path / "in.gif")
    cache = ModelCache()
    cases = [("gone.gif", 4, "entry 0: video 'gone.gif' not found"), ("in.gif", 9, "in.gif has 8 frames.*ask for L 8")]
    for video, frames, message in cases:
        entry = {"motion_module": "mm.safetensors", "prompt": ["a"], "video": video, "L": frames}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump([entry]))
        with pytest.raises(ValueError, match=message):
            run_prompt_config(tmp_path / "c.yaml", base_folder, tmp_path / "runs", cache, progress=False)
    assert not cache.loads
