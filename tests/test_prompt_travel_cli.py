"""`animatediff generate --prompt-map FILE --prompt-interpolation MODE`: prompt travel from the command line."""

import json

import numpy as np
import pytest

from animatediff.cli import main
from animatediff.formats import save_motion_modules
from animatediff.pipeline import AnimationPipeline
from tests.tiny import tiny_motion

STEPS = ["--frames", "4", "--steps", "1", "--seed", "5", "--quiet"]


@pytest.fixture
def models(tmp_path, base_folder):
    motion_module = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    return ["--base", str(base_folder), "--motion-module", str(motion_module)]


def _api(models: list[str], prompt: dict, mode: str, loop: bool = False) -> np.ndarray:
    pipe = AnimationPipeline.from_pretrained(models[1], models[3])
    return pipe(prompt, "", num_frames=4, num_inference_steps=1, seed=5, prompt_interpolation=mode,
                prompt_travel_loop=loop, progress=False)[0]  # fmt: skip


def test_a_json_prompt_map_draws_what_the_library_draws(tmp_path, models, one_thread):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"0": "a fox", "3": "a boat"}))  # JSON keys are strings
    out = tmp_path / "o.npy"
    assert main(["generate", *models, "--prompt-map", str(path), *STEPS, "--output", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), _api(models, {0: "a fox", 3: "a boat"}, "linear"))


def test_a_yaml_prompt_map_with_prompt_as_head_text_and_an_interpolation(tmp_path, models, one_thread):
    path = tmp_path / "map.yaml"
    path.write_text("0: moving left\n2: moving up\n")
    out = tmp_path / "o.npy"
    args = ["--prompt", "a red circle", "--prompt-map", str(path), "--prompt-interpolation", "slerp"]
    assert main(["generate", *models, *args, *STEPS, "--output", str(out)]) == 0
    expected = _api(models, {0: "a red circle,moving left", 2: "a red circle,moving up"}, "slerp")
    np.testing.assert_array_equal(np.load(out), expected)
    # --prompt-travel-loop: frame 3 travels on from the last keyframe towards the first
    assert main(["generate", *models, *args, "--prompt-travel-loop", *STEPS, "--output", str(out)]) == 0
    looped = _api(models, {0: "a red circle,moving left", 2: "a red circle,moving up"}, "slerp", loop=True)
    np.testing.assert_array_equal(np.load(out), looped)
    assert np.abs(looped - expected).max() > 5e-4  # the text of frame 3 changed


@pytest.mark.parametrize(
    "content, message",
    [
        ("0: a fox\n4: a boat\n", "prompt keyframe 4 is beyond the clip's last frame, 3 (frames count from 0)"),
        ("-1: a fox\n", "frame -1 is not a non-negative integer"),
        ('{"1.5": "a fox"}', "frame '1.5' is not a non-negative integer"),
        ("{}", "is empty"),
        ("- a fox\n- a boat\n", "expected a mapping of frame → prompt, got list"),
        ("0: [a, b]\n", "the prompt of frame 0 must be a string"),
        ("0: 'a fox\n", "not readable as YAML or JSON"),
        (b"\xff\xfe\x00\x81", "not readable as YAML or JSON"),
        (None, "prompt map not found"),
    ],
)
def test_a_bad_prompt_map_is_one_line_before_any_model_loads(tmp_path, models, monkeypatch, capsys, content, message):
    monkeypatch.setattr(AnimationPipeline, "from_pretrained", lambda *a, **k: pytest.fail("a model was loaded"))
    path = tmp_path / "map.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert main(["generate", *models, "--prompt-map", str(path), *STEPS, "--output", str(tmp_path / "o.npy")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_no_prompt_at_all_is_one_line(tmp_path, models, monkeypatch, capsys):
    monkeypatch.setattr(AnimationPipeline, "from_pretrained", lambda *a, **k: pytest.fail("a model was loaded"))
    assert main(["generate", *models, *STEPS, "--output", str(tmp_path / "o.npy")]) == 2
    assert "give --prompt (what to animate) or --prompt-map" in capsys.readouterr().err


def test_a_travel_loop_without_prompt_travel_is_one_line(tmp_path, models, monkeypatch, capsys):
    monkeypatch.setattr(AnimationPipeline, "from_pretrained", lambda *a, **k: pytest.fail("a model was loaded"))
    argv = ["generate", *models, "--prompt", "a fox", "--prompt-travel-loop", *STEPS, "--output", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "--prompt-travel-loop needs keyframes: --prompt-map, keyframe lines in --prompt" in capsys.readouterr().err
