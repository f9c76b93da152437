"""`generate --reference IMAGE` (with `--reference-mode`, `--reference-fidelity`, `--reference-pattern`), a run
entry's `reference` and prompt-travel's `controlnet_map.controlnet_ref`: the library's frames, and bad input as one
line before any model loads."""

import json
import re

import numpy as np
import pytest
import yaml
from PIL import Image

from animatediff.formats import save_motion_modules
from animatediff.model_cache import ModelCache
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.reference import Reference
from animatediff.prompt_config import load_prompt_config, run_prompt_config
from tests.cli_helpers import assert_run_drew, generate, generate_error
from tests.test_prompt_config import assets  # noqa: F401 - the fixture: a motion module, a LoRA, a MotionLoRA
from tests.test_prompt_travel_config import document
from tests.tiny import tiny_motion

SECTION = {"enable": True, "ref_image": "ref.png", "attention_auto_machine_weight": 0.5, "gn_auto_machine_weight": 1.0}
SECTION |= {"style_fidelity": 0.25, "reference_attn": True, "reference_adain": True, "scale_pattern": [1.0, 0.5]}


def test_the_cli_and_a_run_entry_draw_what_the_library_draws(tmp_path, base_folder, one_thread):
    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    picture = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)  # covered and cropped to 16²
    Image.fromarray(picture).save(tmp_path / "ref.png")
    extra = ["--reference", str(tmp_path / "ref.png"), "--reference-mode", "adain+attn", "--reference-fidelity", "0.25",
             "--reference-pattern", "1,0.5"]  # fmt: skip
    assert generate(base_folder, motion, tmp_path / "o.npy", *extra) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    reference = Reference(tmp_path / "ref.png", adain=True, style_fidelity=0.25, scale_pattern=[1, 0.5])
    expected = pipe("a fox", "", seed=3, num_frames=4, num_inference_steps=4, reference=reference, progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected[0])
    plain = pipe("a fox", "", seed=3, num_frames=4, num_inference_steps=4, progress=False)
    assert np.abs(plain - expected).max() > 1e-3

    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4}
    entry["reference"] = {"image": "ref.png", "adain": True, "style_fidelity": 0.25, "scale_pattern": [1, 0.5]}
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([entry]))
    run_prompt_config(tmp_path / "entry.yaml", base_folder, tmp_path / "runs", ModelCache(), progress=False)
    assert_run_drew(tmp_path / "runs", expected[0], tmp_path)


def test_prompt_travels_section_switched_on_is_the_entrys_reference(assets):  # noqa: F811
    config = assets / "prompt_travel.json"
    config.write_text(json.dumps(document(controlnet_map={"controlnet_ref": SECTION})))
    (entry,), _ = load_prompt_config(config)
    expected = {"image": "ref.png", "attention_weight": 0.5, "adain_weight": 1.0, "style_fidelity": 0.25}
    assert entry.reference == {**expected, "attention": True, "adain": True, "scale_pattern": [1.0, 0.5]}
    assert entry.keyframe_controlnets == []
    config.write_text(json.dumps(document(controlnet_map={"controlnet_ref": {**SECTION, "enable": False}})))
    (entry,), _ = load_prompt_config(config)
    assert entry.reference is None
    config.write_text(json.dumps(document(controlnet_map={"controlnet_ref": {**SECTION, "use_frame_as_ref_image": 1}})))
    with pytest.raises(ValueError, match="controlnet_ref: 'use_frame_as_ref_image' is not read here"):
        load_prompt_config(config)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--reference-fidelity", "0.5"], "need --reference"),
        (["--reference", "missing.png"], "reference image not found: missing.png"),
        (["--reference", "IMAGE", "--reference-fidelity", "2"], "style_fidelity must be in [0, 1]"),
        (["--reference", "IMAGE", "--reference-pattern", "1,x"], "numbers joined by commas"),
        (["--reference", "IMAGE", "--pag-scale", "3"], "use one of them"),
    ],
)
def test_bad_options_fail_in_one_line_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    Image.new("RGB", (8, 8)).save(tmp_path / "ref.png")
    extra = [str(tmp_path / "ref.png") if e == "IMAGE" else e for e in extra]
    err = generate_error(tmp_path, capsys, monkeypatch, *extra)
    assert re.search(re.escape(message), err), err


@pytest.mark.parametrize(
    "section, message",
    [
        ({"image": "ref.png", "adain": "yes"}, "entry 0: reference attention and adain must be true or false"),
        ({"image": "ref.png", "fidelity": 1}, "entry 0: reference 'fidelity' is not read here"),
        ({"adain": True}, "entry 0: reference must be a mapping with image"),
    ],
)
def test_bad_run_entries_name_the_problem(tmp_path, section, message):
    entry = {"motion_module": "mm.safetensors", "prompt": ["a"], "reference": section}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump([entry]))
    with pytest.raises(ValueError, match=re.escape(message)):
        load_prompt_config(tmp_path / "c.yaml")
