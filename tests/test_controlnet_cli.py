"""ControlNet from the command line (`generate --controlnet …`) and in `run` entries: the same frames as the library
call, control videos read and checked before any model loads, Canny edges with OpenCV."""

import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from animatediff.cli import main
from animatediff.errors import InputError
from animatediff.formats import save_motion_modules
from animatediff.io.video import save_video
from animatediff.io.video_input import fit_frames, read_video_input
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.annotators import canny
from animatediff.pipeline.control_inputs import check_control_keys
from animatediff.pipeline.controlnet import ControlNet
from animatediff.prompt_config import run_prompt_config
from tests.controlnet_helpers import tiny_controlnet
from tests.tiny import tiny_motion, tiny_unet


def squares(num_frames: int, size: int = 24) -> np.ndarray:
    """A white square moving right on black, (f, size, size, 3) in [0, 1]."""
    frames = np.zeros((num_frames, size, size, 3), np.float32)
    for i in range(num_frames):
        frames[i, 6:16, 2 + 2 * i : 12 + 2 * i] = 1.0
    return frames


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("controlnet")
    save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    tiny_controlnet(tiny_unet(), seed=11).save_pretrained(tmp_path / "cn_a")
    tiny_controlnet(tiny_unet(), seed=12).save_pretrained(tmp_path / "cn_b")
    save_video(squares(5), tmp_path / "control.gif")
    (tmp_path / "frames").mkdir()
    for i, frame in enumerate(squares(4, 16)[:, ::-1]):
        Image.fromarray((frame * 255).astype(np.uint8)).save(tmp_path / "frames" / f"{i}.png")
    return tmp_path


def generate(base, assets, out, *extra) -> int:
    args = ["generate", "--base", str(base), "--motion-module", str(assets / "mm.safetensors"), "--quiet"]
    args += ["--prompt", "a fox", "--frames", "4", "--steps", "2", "--seed", "3", "--output", str(out), *extra]
    return main(args)


def test_generate_matches_the_library_call(base_folder, assets, one_thread):
    a, b = str(assets / "cn_a"), str(assets / "cn_b")
    rc = generate(
        base_folder, assets, assets / "out.npy",
        "--controlnet", f"{a}:0.8", "--control-video", str(assets / "control.gif"), "--control-from-video", "canny",
        "--controlnet", b, "--control-frames", str(assets / "frames"), "--control-from-video", "none",
        "--control-end", "0.5",
    )  # fmt: skip
    assert rc == 0
    got = np.load(assets / "out.npy")

    pipe = AnimationPipeline.from_pretrained(base_folder, assets / "mm.safetensors")
    edges = canny(fit_frames(read_video_input(assets / "control.gif", 4), 16, 16))
    assert edges.shape == (4, 16, 16, 3) and 0 < edges.mean() < 0.5
    folder = read_video_input(assets / "frames", 4)
    controls = [
        ControlNet(tiny_controlnet(pipe.unet.unet, seed=11), edges, scale=0.8, end=0.5),
        ControlNet(tiny_controlnet(pipe.unet.unet, seed=12), folder, end=0.5),
    ]
    expected = pipe("a fox", "", num_frames=4, num_inference_steps=2, seed=3, progress=False, controlnets=controls)
    np.testing.assert_allclose(got, expected[0], rtol=0, atol=1e-6)
    plain = pipe("a fox", "", num_frames=4, num_inference_steps=2, seed=3, progress=False)
    assert np.abs(got - plain[0]).mean() > 1e-2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--control-video", "control.gif"], "--control-video without --controlnet"),
        (["--guess-mode"], "--guess-mode without --controlnet"),
        (["--controlnet", "cn_a"], "0 control videos (--control-video or --control-frames) for 1 ControlNets"),
        (["--controlnet", "cn_a", "--controlnet", "cn_b", "--control-video", "control.gif"], "1 control videos"),
        (["--controlnet", "cn_a:x", "--control-video", "control.gif"], "ControlNet scale 'x' is not a number"),
        (["--controlnet", "cn_a", "--control-video", "missing.mp4"], "control video not found: missing.mp4"),
        (["--controlnet", "missing", "--control-video", "control.gif"], "ControlNet not found: missing"),
        (["--controlnet", "cn_a", "--control-frames", "control.gif"], "--control-frames 'control.gif': not a folder"),
        (["--controlnet", "cn_a", "--control-video", "control.gif", "--frames", "6"], "has 5 frames, but 6 frames"),
        (
            ["--controlnet", "cn_a", "--control-video", "control.gif", "--control-start", "0.5", "--control-end", ".5"],
            "need 0 ≤ start < end ≤ 1",
        ),
    ],
)
def test_bad_control_options_fail_in_one_line_before_loading(base_folder, assets, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(assets)
    monkeypatch.setattr(AnimationPipeline, "from_pretrained", lambda *a, **k: pytest.fail("a model was loaded"))
    args = ["generate", "--base", str(base_folder), "--motion-module", "mm.safetensors", "--prompt", "p"]
    args += ["--frames", "4", "--output", "o.npy", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_canny_without_opencv_names_the_extra(base_folder, assets, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if not installed: importing it raises ImportError
    monkeypatch.chdir(assets)
    args = ["--controlnet", "cn_a", "--control-video", "control.gif", "--control-from-video", "canny"]
    assert generate(base_folder, assets, "o.npy", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "needs cv2, which is not installed: pip install 'animatediff[control]' (or opencv-python-headless)"
    )


def test_canny_marks_the_edges_of_a_square():
    frame = np.zeros((1, 32, 32, 3), np.float32)
    frame[0, 8:24, 8:24] = 1.0
    edges = canny(frame)
    assert edges.shape == (1, 32, 32, 3) and set(np.unique(edges)) == {0.0, 1.0}
    assert (edges[..., 0] == edges[..., 2]).all()
    rows, cols = np.nonzero(edges[0, ..., 0])
    assert rows.min() >= 7 and rows.max() <= 24 and cols.min() >= 7 and cols.max() <= 24
    assert edges[0, 12:20, 12:20].sum() == 0 and edges[0, :4].sum() == 0  # nothing inside the square or far outside


def test_a_run_entry_with_controlnet_keys(base_folder, assets, tmp_path, one_thread):
    common = dict(motion_module="mm.safetensors", steps=2, guidance_scale=7.5, L=4, seed=3, prompt=["a fox"])
    control = dict(controlnet=["cn_a:0.8"], control_video="control.gif", control_from_video="canny", control_end=0.5)
    config = assets / "config.yaml"
    config.write_text(yaml.safe_dump([common, {**common, **control}], sort_keys=False))
    out = run_prompt_config(config, base_folder, tmp_path / "samples", progress=False)
    plain, controlled = (np.asarray(Image.open(out / "sample" / f"{i}-a-fox.gif").convert("RGB")) for i in (0, 1))
    assert np.abs(plain.astype(int) - controlled.astype(int)).mean() > 1


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (dict(control_video="a.mp4"), "control_video without controlnet"),
        (dict(controlnet="a", control_video=["a.mp4"], control_start=[0.1, 0.2]), "2 control_start values"),
        (dict(controlnet=["a", "b"], control_video=["a.mp4", ""], control_frames=["d", "e"]), "control_video and"),
        (dict(controlnet="a", control_video="a.mp4", control_from_video="depth"), "annotator 'depth'"),
        (dict(controlnet="a", control_video="a.mp4", guess_mode="yes"), "guess_mode must be true or false"),
        (dict(controlnet=1), "controlnet must be a string or a list of strings"),
    ],
)
def test_bad_run_entry_keys(values, message):
    with pytest.raises(InputError, match=message):
        check_control_keys(values, "c.yaml entry 0")


def test_run_entry_keys_become_lists():
    values = dict(controlnet="a:0.5", control_video="a.mp4", control_start=0.25, guess_mode=True)
    check_control_keys(values, "c.yaml entry 0")
    assert values["controlnet"] == ["a:0.5"] and values["control_video"] == ["a.mp4"]
    assert values["control_start"] == [0.25] and values["control_end"] == [] and values["control_frames"] == []
