"""`generate`'s window options, --loop and --motion-scale: what reaches the pipeline, looping files, bad input as one
line before any model loads."""

import numpy as np
import pytest
from PIL import Image

from animatediff.cli import main
from animatediff.formats import save_motion_modules
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline import animation as pipeline_module
from animatediff.sampling.context import ContextSchedule
from tests.tiny import tiny_motion


@pytest.fixture
def motion_file(tmp_path):
    return save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")


@pytest.fixture
def seen(monkeypatch):
    """The ContextSchedule and motion scale each pipeline call runs with."""
    record = {"context": [], "motion_scale": []}
    windowed, motion_scaled = pipeline_module.windowed, pipeline_module.motion_scaled

    def windowed_spy(predict, num_frames, context, **kwargs):  # noqa: ANN001, ANN003, ANN202
        record["context"].append(context)
        return windowed(predict, num_frames, context, **kwargs)

    def motion_scaled_spy(unet, predict, scale):  # noqa: ANN001, ANN202
        record["motion_scale"].append(scale)
        return motion_scaled(unet, predict, scale)

    monkeypatch.setattr(pipeline_module, "windowed", windowed_spy)
    monkeypatch.setattr(pipeline_module, "motion_scaled", motion_scaled_spy)
    return record


def generate(tmp_path, base, motion, output: str, *extra: str) -> int:  # noqa: ANN001
    args = ["generate", "--base", str(base), "--motion-module", str(motion), "--quiet", "--prompt", "a fox"]
    return main([*args, "--steps", "1", "--seed", "1", "--output", str(tmp_path / output), *extra])


@pytest.mark.parametrize("output", ["loop.gif", "loop.webp", "loop.mp4"])
def test_loop_draws_looped_windows_and_the_file_plays_forever(
    tmp_path, base_folder, motion_file, seen, one_thread, output
):
    assert generate(tmp_path, base_folder, motion_file, output, "--frames", "12", "--loop") == 0
    # 12 frames fit one window of 16: --loop takes windows of half the clip, overlapping by at most half a window.
    assert seen["context"] == [ContextSchedule(6, 3, schedule="looped", closed_loop=True)]
    path = tmp_path / output
    if output.endswith(".mp4"):
        import av

        with av.open(str(path)) as c:
            assert sum(1 for _ in c.decode(video=0)) == 12
        return
    image = Image.open(path)
    assert image.n_frames == 12 and image.info["loop"] == 0  # 0: loop forever
    if output.endswith(".gif"):
        assert b"NETSCAPE2.0\x03\x01\x00\x00" in path.read_bytes()  # the looping extension, count 0


def test_window_options_and_motion_scale_reach_the_pipeline(tmp_path, base_folder, motion_file, seen, one_thread):
    extra = ["--frames", "20", "--context-length", "8", "--context-overlap", "2", "--context-stride", "2"]
    extra += ["--context-schedule", "uniform", "--context-fuse", "overlap-linear", "--closed-loop"]
    assert generate(tmp_path, base_folder, motion_file, "o.npy", *extra, "--motion-scale", "0.5") == 0
    assert seen["context"] == [ContextSchedule(8, 2, 2, "uniform", "overlap-linear", closed_loop=True)]
    assert seen["motion_scale"] == [0.5]
    assert np.load(tmp_path / "o.npy").shape[0] == 20
    # --loop with the uniform schedule closes it; a long clip gets windows of 16.
    assert (
        generate(
            tmp_path, base_folder, motion_file, "p.npy", "--frames", "20", "--loop", "--context-schedule", "uniform"
        )
        == 0
    )
    assert seen["context"][-1] == ContextSchedule(16, 4, schedule="uniform", closed_loop=True)
    assert seen["motion_scale"][-1] is None


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--context-length", "8", "--context-overlap", "8"], "context overlap 8 must be from 0 to the context length"),
        (["--context-length", "8", "--context-schedule", "uniform", "--context-stride", "0"], "context stride 0"),
        (["--context-length", "8", "--context-schedule", "spiral"], "unknown context schedule 'spiral'; expected"),
        (["--context-length", "8", "--context-fuse", "gauss"], "unknown context fuse 'gauss'; expected one of"),
        (["--context-length", "8", "--closed-loop"], "'static' windows never wrap"),
        (["--loop", "--context-schedule", "static"], "--loop: static windows never wrap"),
        (["--context-schedule", "uniform"], "--context-schedule needs --context-length"),
        (["--context-stride", "2"], "--context-stride needs --context-length"),
        (["--motion-scale", "-1"], "motion scale -1.0 must be a number ≥ 0"),
        (["--free-noise", "--loop"], "--loop is for sliding context windows, which --free-noise replaces"),
    ],
)
def test_bad_window_options_are_one_line_before_loading(
    tmp_path, base_folder, motion_file, capsys, monkeypatch, extra, message
):
    loads = []
    monkeypatch.setattr(AnimationPipeline, "from_pretrained", lambda *a, **k: loads.append(1))
    assert generate(tmp_path, base_folder, motion_file, "o.npy", "--frames", "20", *extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and loads == []


def test_a_window_longer_than_the_position_encoding_is_one_line(tmp_path, base_folder, motion_file, capsys, one_thread):
    extra = ["--frames", "40", "--context-length", "40", "--context-schedule", "looped"]
    assert generate(tmp_path, base_folder, motion_file, "o.npy", *extra) == 2
    err = capsys.readouterr().err
    assert "context_length 40: the motion module sees at most 32 frames" in err and "Traceback" not in err
