"""The command line loses nothing and hides nothing: outputs checked before models load, interrupts end cleanly
(exit 130, nothing partial), broken frames and absent devices are one clear line."""

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from animatediff.cli import main
from animatediff.formats import save_motion_modules
from animatediff.formats.motion_module_files import motion_state_dict
from animatediff.formats.state_dicts import write_state_dict
from animatediff.io.video import save_video
from animatediff.model_cache import ModelCache
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline import animation as pipeline_module
from tests.tiny import tiny_motion

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def no_loading(monkeypatch):
    """Any model load fails the test: the check under test must come first."""
    monkeypatch.setattr(AnimationPipeline, "from_pretrained", lambda *a, **k: pytest.fail("a model loaded"))
    monkeypatch.setattr(ModelCache, "pipeline", lambda *a, **k: pytest.fail("a model loaded"))


@pytest.fixture
def motion_file(tmp_path):
    return save_motion_modules(tiny_motion("v2"), tmp_path / "models" / "mm.safetensors")


def listing(folder) -> dict[str, bytes | None]:  # noqa: ANN001
    """Every path under `folder` (hidden temporaries included), with the bytes of each file."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def main_catching(args: list[str]) -> int:
    """`main`, with an interrupt it lets through failing the test (rather than ending the whole test session)."""
    try:
        return main(args)
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped main")


def one_error_line(capsys) -> str:  # noqa: ANN001
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize(
    "output, make, message",
    [
        ("a-file/out.gif", "a-file", "a-file is a file, not a folder"),
        ("a-file/deeper/out.gif", "a-file", "a-file is a file, not a folder"),
        ("out.gif", "out.gif/", "a folder is there, where the file would go"),
        ("frames", "frames", "a file is there, where the folder would go"),
        ("photos", "photos/holiday.jpg", "a folder holding other files is there; name a new or empty folder"),
    ],
)
def test_an_output_that_cannot_be_written_fails_before_any_model_loads(
    tmp_path, capsys, no_loading, output, make, message
):
    target = tmp_path / make
    target.parent.mkdir(parents=True, exist_ok=True)
    target.mkdir() if make.endswith("/") else target.write_bytes(b"mine")
    before = listing(tmp_path)
    assert main(["generate", "--prompt", "p", "--quiet", "--output", str(tmp_path / output)]) == 2
    assert one_error_line(capsys) == f"animatediff generate: error: --output {tmp_path / output}: " + message.replace(
        "a-file is", f"{tmp_path / 'a-file'} is"
    )
    assert listing(tmp_path) == before


class Loading(Exception):
    pass


def test_the_output_folder_is_created_before_the_models_load(tmp_path, monkeypatch):
    out = tmp_path / "new" / "sub" / "out.gif"

    def load(*args, **kwargs):
        assert listing(tmp_path) == {"new": None, "new/sub": None}  # made, and the probe file gone
        raise Loading

    monkeypatch.setattr(AnimationPipeline, "from_pretrained", load)
    with pytest.raises(Loading):
        main(["generate", "--prompt", "p", "--quiet", "--output", str(out)])


def test_run_checks_its_output_dir_before_any_model_loads(tmp_path, capsys, no_loading):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump([{"motion_module": "mm.safetensors", "prompt": ["a fox"]}]))
    (tmp_path / "samples").write_text("a file")
    out = tmp_path / "samples" / "today"
    assert main(["run", str(config), "--output-dir", str(out)]) == 2
    expected = f"--output-dir {out}: {tmp_path / 'samples'} is a file, not a folder"
    assert one_error_line(capsys) == f"animatediff run: error: {expected}"


def _generate(base_folder, motion_file, out) -> list[str]:  # noqa: ANN001
    return ["generate", "--base", str(base_folder), "--motion-module", str(motion_file), "--prompt", "a fox",
            "--frames", "2", "--steps", "1", "--quiet", "--output", str(out)]  # fmt: skip


def test_an_interrupt_while_denoising_ends_with_130_and_no_output(
    tmp_path, base_folder, motion_file, monkeypatch, capfd
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_module, "denoise", interrupted)
    before = listing(tmp_path)
    assert main_catching(_generate(base_folder, motion_file, tmp_path / "out" / "a.gif")) == 130
    assert capfd.readouterr().err == "animatediff generate: interrupted\n"
    assert listing(tmp_path) == {**before, "out": None}  # the checked output folder, empty


@pytest.mark.parametrize("name", ["a.gif", "a.webp", "frames"])
def test_an_interrupt_while_saving_leaves_the_earlier_output(
    tmp_path, base_folder, motion_file, monkeypatch, capfd, name
):
    out = save_video(np.full((2, 16, 16, 3), 0.5, np.float32), tmp_path / "out" / name)  # an earlier output
    before = listing(tmp_path)
    save = Image.Image.save

    def interrupted(self, fp, *args, **kwargs):  # noqa: ANN001
        save(self, fp, *args, **kwargs)
        with open(fp, "r+b") as f:
            f.truncate(10)
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    assert main_catching(_generate(base_folder, motion_file, out)) == 130
    assert capfd.readouterr().err == "animatediff generate: interrupted\n"
    assert listing(tmp_path) == before


def test_an_interrupted_run_or_world_command_ends_with_130(tmp_path, base_folder, motion_file, monkeypatch, capfd):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump([{"motion_module": str(motion_file), "prompt": ["a fox"], "steps": 1, "L": 2}]))
    monkeypatch.setattr(pipeline_module, "denoise", interrupted)
    assert (
        main_catching(["run", str(config), "--base", str(base_folder), "--output-dir", str(tmp_path / "s"), "--quiet"])
        == 130
    )
    assert capfd.readouterr().err == "animatediff run: interrupted\n"
    import animatediff.world.evaluate as world_evaluate

    monkeypatch.setattr(world_evaluate, "evaluate_world", interrupted)
    assert main_catching(["world", "eval", "--output-dir", str(tmp_path / "e")]) == 130
    assert capfd.readouterr().err == "animatediff world eval: interrupted\n"


def test_frames_that_are_not_finite_are_refused(tmp_path, base_folder, motion_file, monkeypatch, capsys):
    monkeypatch.setattr(AnimationPipeline, "decode", lambda self, latents, *a: np.full((1, 2, 16, 16, 3), np.nan))
    out = tmp_path / "out.gif"
    assert main(_generate(base_folder, motion_file, out)) == 2
    assert "1536 of 1536 values that are not finite (NaN or inf)" in one_error_line(capsys)
    assert not out.exists()
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump([{"motion_module": str(motion_file), "prompt": ["a fox"], "steps": 1, "L": 2}]))
    assert main(["run", str(config), "--base", str(base_folder), "--output-dir", str(tmp_path / "s"), "--quiet"]) == 2
    assert "1536 of 1536 values that are not finite (NaN or inf)" in one_error_line(capsys)
    assert not list((tmp_path / "s").rglob("*.gif"))


def test_a_motion_module_with_non_finite_weights_is_one_line(tmp_path, base_folder, capsys):
    sd = motion_state_dict(tiny_motion("v2"))
    key = next(k for k in sd if k.endswith("proj_in.weight"))
    sd[key] = sd[key].clone()
    sd[key].view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    bad = write_state_dict(tmp_path / "diverged.safetensors", sd)
    assert main(_generate(base_folder, bad, tmp_path / "out.gif")) == 2
    err = one_error_line(capsys)
    assert f"{bad}: 3 of " in err and "motion-module weight values are not finite (NaN or inf), in 1 tensors" in err
    assert not (tmp_path / "out.gif").exists()


@pytest.mark.parametrize(
    "device, cuda, message",
    [
        ("cuda", False, "--device cuda: no CUDA GPU is available; use --device cpu"),
        ("cuda:0", False, "--device cuda:0: no CUDA GPU is available; use --device cpu"),
        ("cuda:1", True, "--device cuda:1: there is no such GPU; this machine has cuda:0 to cuda:0"),
        ("gpu", False, "--device gpu: unknown device; use cuda, cuda:N or cpu"),
    ],
)
@pytest.mark.parametrize("command", ["generate", "run"])
def test_an_absent_or_unknown_device_fails_before_loading(
    tmp_path, monkeypatch, capsys, no_loading, command, device, cuda, message
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(cuda))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump([{"motion_module": "mm.safetensors", "prompt": ["a fox"]}]))
    args = {
        "generate": ["--prompt", "p", "--output", str(tmp_path / "o.gif")],
        "run": [str(config), "--output-dir", str(tmp_path / "s")],
    }[command]
    assert main([command, "--device", device, *args]) == 2
    assert one_error_line(capsys) == f"animatediff {command}: error: {message}"
