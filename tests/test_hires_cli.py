"""`animatediff generate --hires-scale S --hires-strength D --hires-steps N` and `run` entries with `hires_scale`,
`hires_strength`, `hires_steps`: the frames of `hires_fix` after the first pass, and bad input as one line before
any model loads."""

import re

import numpy as np
import pytest
import yaml

from animatediff.cli import build_parser, hires_options
from animatediff.errors import InputError
from animatediff.formats import save_motion_modules
from animatediff.model_cache import ModelCache
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.hires import HiresFix, hires_fix
from animatediff.prompt_config import load_prompt_config, run_prompt_config
from tests.cli_helpers import assert_run_drew, generate, generate_error
from tests.tiny import tiny_motion


def test_the_cli_and_a_run_entry_draw_what_the_library_draws(tmp_path, base_folder, one_thread):
    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    extra = ["--hires-scale", "1.5", "--hires-strength", "0.75", "--hires-steps", "6", "--guidance-scale", "7.5"]
    assert generate(base_folder, motion, tmp_path / "o.npy", *extra) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    call = dict(num_frames=4, num_inference_steps=4, guidance_scale=7.5, progress=False)
    first = pipe("a fox", "", seed=3, **call)
    expected = hires_fix(pipe, first, HiresFix(1.5, 0.75, 6), "a fox", "", seed=3, **call)[0]
    got = np.load(tmp_path / "o.npy")
    assert got.shape == (4, 24, 24, 3)
    np.testing.assert_array_equal(got, expected)

    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4, "hires_scale": 1.5,
             "hires_strength": 0.75, "hires_steps": 6, "guidance_scale": 7.5}  # fmt: skip
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([entry]))
    run_prompt_config(tmp_path / "entry.yaml", base_folder, tmp_path / "runs", ModelCache(), progress=False)
    assert_run_drew(tmp_path / "runs", expected, tmp_path)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--hires-scale", "5"], "hires scale must be a number from 1 to 4, got 5.0"),
        (["--hires-scale", "1.5", "--hires-strength", "1.5"], r"hires strength must be in \(0, 1\], got 1.5"),
        (["--hires-scale", "1.5", "--hires-strength", "0.2"], "hires strength 0.2 leaves no step of 4 to run"),
        (["--hires-scale", "1.5", "--hires-steps", "0"], "hires steps must be a whole number ≥ 1, got 0"),
        (["--hires-strength", "0.5"], "--hires-strength, --hires-steps and --hires-upscaler need --hires-scale"),
        (["--hires-upscaler", "latent"], "--hires-strength, --hires-steps and --hires-upscaler need --hires-scale"),
    ],
)
def test_bad_hires_options_fail_in_one_line_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    err = generate_error(tmp_path, capsys, monkeypatch, *extra)
    assert re.search(message, err), err


def test_the_options_default_and_help():
    args = build_parser().parse_args(["generate", "--prompt", "p"])
    assert (args.hires_scale, args.hires_strength, args.hires_steps) == (None, None, None)
    assert hires_options.DEFAULT_STRENGTH == HiresFix().strength  # the parser's copy (it imports no torch)
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["generate"].format_help().split())
    for option in ("--hires-scale S", "--hires-strength D", "--hires-steps N", "A1111's Hires. fix"):
        assert option in help_text


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"hires_strength": 0.5}, "entry 0: hires_strength needs hires_scale"),
        ({"hires_scale": 0.5}, "entry 0: hires scale must be a number from 1 to 4"),
        ({"hires_scale": 2, "hires_strength": 0.01, "steps": 10}, "hires strength 0.01 leaves no step of 10 to run"),
    ],
)
def test_bad_run_entries_name_the_problem(tmp_path, edit, message):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump([{"motion_module": "mm.safetensors", "prompt": ["a"], **edit}]))
    with pytest.raises(ValueError, match=message):
        load_prompt_config(tmp_path / "c.yaml")


def test_a_latent_upscaler_from_the_cli_and_a_run_entry(tmp_path, base_folder, one_thread):
    from animatediff.pipeline.hires import UPSCALERS, draw

    assert tuple(UPSCALERS) == hires_options.UPSCALERS  # the parser's copy (it imports no torch)
    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    extra = ["--hires-scale", "2", "--hires-upscaler", "latent-bicubic", "--hires-strength", "0.75"]
    assert generate(base_folder, motion, tmp_path / "o.npy", *extra) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    hires = HiresFix(2, 0.75, 4, "latent-bicubic")
    expected = draw(pipe, "a fox", "", 3, hires, num_frames=4, num_inference_steps=4, progress=False)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected)
    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4, "hires_scale": 2,
             "hires_strength": 0.75, "hires_upscaler": "latent-bicubic"}  # fmt: skip
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([entry]))
    run_prompt_config(tmp_path / "entry.yaml", base_folder, tmp_path / "runs", ModelCache(), progress=False)
    assert_run_drew(tmp_path / "runs", expected, tmp_path)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump([{**entry, "hires_upscaler": "esrgan"}]))
    with pytest.raises(InputError, match="hires upscaler 'esrgan': choose one of pixel, latent"):
        load_prompt_config(tmp_path / "bad.yaml")
