import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from animatediff.base_model import DEFAULT_GUIDANCE_SCALE as GUIDANCE_SCALE
from animatediff.cli import main
from animatediff.formats import save_motion_modules
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline import animation as pipeline_module
from animatediff.world.cli import embedded_base_and_module as default_models
from animatediff.world.layout import WORLD_GUIDANCE_SCALE
from tests.tiny import tiny_motion


def generate_args(base, motion_module, *extra: str) -> list[str]:
    """`animatediff generate --quiet` on the given models, plus `extra` options."""
    return ["generate", "--base", str(base), "--motion-module", str(motion_module), "--quiet", *extra]


@pytest.fixture
def motion_file(tmp_path):
    return save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")


@pytest.mark.parametrize("output", ["out.npy", "out.gif", "out.mp4", "out.webp", "frames"])
def test_generate_writes_every_format(tmp_path, base_folder, motion_file, output):
    out = tmp_path / output
    rc = main(
        generate_args(
            base_folder,
            motion_file,
            "--prompt",
            "a fox",
            "--frames",
            "4",
            "--steps",
            "2",
            "--seed",
            "1",
            "--output",
            str(out),
        )
    )
    assert rc == 0
    if output.endswith(".npy"):
        frames = np.load(out)
        assert frames.shape == (4, 16, 16, 3) and frames.dtype == np.float32
        assert 0 <= frames.min() and frames.max() <= 1
    elif output.endswith((".gif", ".webp")):
        assert Image.open(out).n_frames == 4
    elif output.endswith(".mp4"):
        import av

        with av.open(str(out)) as c:
            assert sum(1 for _ in c.decode(video=0)) == 4
    else:
        assert sorted(p.name for p in out.iterdir()) == [f"{i:04d}.png" for i in range(4)]


def test_convert_round_trip_via_cli(tmp_path, motion_file):
    assert main(["convert", str(motion_file), str(tmp_path / "folder")]) == 0
    assert main(["convert", str(tmp_path / "folder"), str(tmp_path / "back.ckpt")]) == 0
    assert (tmp_path / "folder" / "config.json").is_file() and (tmp_path / "back.ckpt").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--scheduler", "nope"], "unknown scheduler 'nope'"),
        (["--frames", "40"], "at most 32"),
        (["--width", "18"], "multiple of 4"),
        (["--output", "x.avi"], "unsupported format"),
    ],
)
def test_generate_bad_input_is_one_clear_line(tmp_path, base_folder, motion_file, capsys, extra, message):
    args = generate_args(base_folder, motion_file, "--prompt", "p", "--steps", "1", "--output", str(tmp_path / "o.npy"))
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_motion_module_file(tmp_path, base_folder, capsys):
    rc = main(generate_args(base_folder, tmp_path / "none.ckpt", "--prompt", "p"))
    assert rc == 2 and "not found" in capsys.readouterr().err


def test_quiet_prints_nothing(tmp_path, base_folder, motion_file, capfd):
    rc = main(
        generate_args(
            base_folder,
            motion_file,
            "--prompt",
            "a fox",
            "--frames",
            "2",
            "--steps",
            "2",
            "--output",
            str(tmp_path / "o.npy"),
        )
    )
    out, err = capfd.readouterr()
    assert rc == 0 and out == "" and err == ""


def test_generate_long_clip_with_context_windows(tmp_path, base_folder, motion_file):
    out = tmp_path / "long.npy"
    rc = main(
        generate_args(
            base_folder,
            motion_file,
            "--prompt",
            "a fox",
            "--frames",
            "36",
            "--context-length",
            "16",
            "--steps",
            "1",
            "--output",
            str(out),
        )
    )
    assert rc == 0 and np.load(out).shape[0] == 36


@pytest.fixture
def seen(monkeypatch):
    """The guidance scale of each sampling run, as the pipeline's guidance step receives it."""
    scales = []
    guide = pipeline_module.guided
    monkeypatch.setattr(pipeline_module, "guided", lambda *a: scales.append(a[3]) or guide(*a))
    return scales


@pytest.mark.parametrize(
    "models, extra, expected",
    [
        ("named", [], GUIDANCE_SCALE),
        ("embedded", [], WORLD_GUIDANCE_SCALE),
        ("world base named", [], WORLD_GUIDANCE_SCALE),
        ("embedded", ["--guidance-scale", "6"], 6.0),
    ],
)
def test_guidance_defaults_to_what_suits_the_model(tmp_path, base_folder, motion_file, seen, models, extra, expected):
    """Named models get the usual 7.5; a world model, whose tiny base over-drives textures at 7.5, its own."""
    args = {
        "named": generate_args(base_folder, motion_file),
        "embedded": ["generate", "--quiet"],
        "world base named": generate_args(*default_models()),
    }[models]
    out = str(tmp_path / "o.npy")
    rc = main([*args, *extra, "--prompt", "a red circle", "--frames", "2", "--steps", "1", "--output", out])
    assert rc == 0
    assert seen == [expected]


def test_the_python_api_samples_a_world_model_at_its_own_guidance(seen):
    """`AnimationPipeline.from_pretrained` on a world base, called with no guidance scale, samples as the CLI does."""
    pipe = AnimationPipeline.from_pretrained(*default_models())
    assert pipe.guidance_scale == WORLD_GUIDANCE_SCALE
    pipe("a red circle", num_frames=2, num_inference_steps=1, progress=False)
    pipe("a red circle", num_frames=2, num_inference_steps=1, guidance_scale=5.0, progress=False)
    assert seen == [WORLD_GUIDANCE_SCALE, 5.0]


def test_only_input_errors_become_one_line(tmp_path, base_folder, motion_file, capsys, monkeypatch):
    """A check of ours fails in one line (exit 2); `--debug` shows its traceback; a bug always keeps it."""
    args = generate_args(
        base_folder, motion_file, "--prompt", "p", "--width", "18", "--output", str(tmp_path / "o.npy")
    )
    assert main(args) == 2
    assert "width 18 must be a positive multiple of 4" in capsys.readouterr().err
    with pytest.raises(ValueError, match="width 18"):
        main(["--debug", *args])
    monkeypatch.setenv("ANIMATEDIFF_DEBUG", "1")
    with pytest.raises(ValueError, match="width 18"):
        main(args)
    monkeypatch.delenv("ANIMATEDIFF_DEBUG")

    def bug(*_args, **_kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(AnimationPipeline, "decode", bug)
    with pytest.raises(ValueError, match="an internal invariant broke"):
        main(generate_args(base_folder, motion_file, "--prompt", "p", "--steps", "1", "--frames", "2"))


def test_version_and_a_missing_half_of_the_models(base_folder, motion_file, capsys):
    from animatediff import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"animatediff {__version__}"
    assert main(["generate", "--base", str(base_folder), "--prompt", "p", "--quiet"]) == 2
    assert "--base needs --motion-module" in capsys.readouterr().err
    assert main(["generate", "--motion-module", str(motion_file), "--prompt", "p", "--quiet"]) == 2
    assert "--motion-module needs --base" in capsys.readouterr().err


def _subparsers(parser):  # noqa: ANN001, ANN202
    """(name, parser) of every command and subcommand, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for subname, subsub in _subparsers(sub):
                    yield f"{name} {subname}", subsub


def test_every_help_says_each_default_once_and_explains_every_option():
    from animatediff.cli import build_parser

    commands = dict(_subparsers(build_parser()))
    assert {"generate", "convert", "run", "prepare", "train", "world build", "world probe", "world eval"} <= set(
        commands
    )
    for name, parser in commands.items():
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: )" not in text and "(default: [])" not in text, name
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue  # each of its commands has its own help
            assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
            shown = parser._get_formatter()._get_help_string(action)
            assert shown.count("default") <= 1, f"{name} {action.option_strings}: {shown!r} says its default twice"


@pytest.mark.parametrize("dtype, expected", [(None, torch.float16), ("fp32", torch.float32), ("bf16", torch.bfloat16)])
@pytest.mark.parametrize("destination", ["out.safetensors", "folder"])
def test_convert_keeps_the_sources_dtype_unless_told(tmp_path, dtype, expected, destination):
    from safetensors.torch import load_file

    from animatediff.formats.motion_module_files import motion_state_dict
    from animatediff.formats.state_dicts import write_state_dict

    half = {k: v.half() for k, v in motion_state_dict(tiny_motion("v2")).items()}
    write_state_dict(tmp_path / "half.safetensors", half)
    args = ["convert", str(tmp_path / "half.safetensors"), str(tmp_path / destination)]
    assert main(args + (["--dtype", dtype] if dtype else [])) == 0
    weights = tmp_path / destination
    written = load_file(weights if weights.is_file() else weights / "diffusion_pytorch_model.safetensors")
    assert {v.dtype for v in written.values()} == {expected}
    if destination.endswith(".safetensors"):
        same = [torch.equal(written[k], v.to(expected)) for k, v in half.items() if not k.endswith("pos_encoder.pe")]
        assert all(same) and len(same) == len(written) - sum(k.endswith("pos_encoder.pe") for k in written)
