"""`generate --gradual-latent F:S,…` (with `--gradual-latent-reverse-steps`, `--gradual-latent-noise-adds`), a run
entry's `gradual_latent` and prompt-travel's `gradual_latent_hires_fix_map`: the library's frames, and bad input as
one line before any model loads."""

import json
import re

import numpy as np
import pytest
import yaml

from animatediff.formats import save_motion_modules
from animatediff.model_cache import ModelCache
from animatediff.pipeline import AnimationPipeline
from animatediff.prompt_config import load_prompt_config, run_prompt_config
from animatediff.sampling.gradual_latent import GradualLatent
from tests.cli_helpers import assert_run_drew, generate, generate_error
from tests.test_prompt_config import assets  # noqa: F401 - the fixture: a motion module, a LoRA, a MotionLoRA
from tests.test_prompt_travel_config import document
from tests.tiny import tiny_motion

SECTION = {"scale": {"0": 0.5, "0.5": 1.0}, "reverse_steps": 2, "noise_add_count": 1}


def test_the_cli_and_a_run_entry_draw_what_the_library_draws(tmp_path, base_folder, one_thread):
    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    extra = ["--gradual-latent", "0:0.5, 0.5:1", "--gradual-latent-reverse-steps", "2", "--gradual-latent-noise-adds",
             "1"]  # fmt: skip
    assert generate(base_folder, motion, tmp_path / "o.npy", *extra) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    gradual = GradualLatent({0: 0.5, 0.5: 1.0}, 2, 1)
    expected = pipe("a fox", "", seed=3, num_frames=4, num_inference_steps=4, gradual_latent=gradual, progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected[0])
    plain = pipe("a fox", "", seed=3, num_frames=4, num_inference_steps=4, progress=False)
    assert np.abs(plain - expected).max() > 1e-3

    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4}
    entry["gradual_latent"] = SECTION
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([entry]))
    run_prompt_config(tmp_path / "entry.yaml", base_folder, tmp_path / "runs", ModelCache(), progress=False)
    assert_run_drew(tmp_path / "runs", expected[0], tmp_path)


def test_prompt_travels_section_switched_on_is_the_entrys_gradual_latent(assets):  # noqa: F811
    config = assets / "prompt_travel.json"
    config.write_text(json.dumps(document(gradual_latent_hires_fix_map={"enable": True, **SECTION})))
    (entry,), _ = load_prompt_config(config)
    assert entry.gradual_latent == SECTION
    config.write_text(json.dumps(document(gradual_latent_hires_fix_map={"enable": False, **SECTION})))
    (entry,), _ = load_prompt_config(config)
    assert entry.gradual_latent is None


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--gradual-latent", "0.5"], "--gradual-latent '0.5': give FRACTION:SCALE pairs"),
        (["--gradual-latent", "0:0.5,0.7:0.8"], "the last gradual latent scale must be 1"),
        (["--gradual-latent-noise-adds", "2"], "need --gradual-latent"),
        (["--gradual-latent", "0:0.5,0.5:1", "--gradual-latent-reverse-steps", "-1"], "reverse_steps must be a whole"),
        (["--gradual-latent", "0:0.5,0.5:1", "--free-init", "2"], "FreeInit cannot follow"),
    ],
)
def test_bad_options_fail_in_one_line_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    err = generate_error(tmp_path, capsys, monkeypatch, *extra)
    assert re.search(re.escape(message), err), err


@pytest.mark.parametrize(
    "section, message",
    [
        ({"scale": {"0": 0.5}}, "entry 0: the last gradual latent scale must be 1"),
        ({"scales": {"0": 1}}, "entry 0: gradual_latent: unknown key 'scales'"),
        ([0.5, 1], "entry 0: gradual_latent must be a mapping"),
    ],
)
def test_bad_run_entries_name_the_problem(tmp_path, section, message):
    entry = {"motion_module": "mm.safetensors", "prompt": ["a"], "gradual_latent": section}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump([entry]))
    with pytest.raises(ValueError, match=re.escape(message)):
        load_prompt_config(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump([{**entry, "gradual_latent": SECTION, "free_init_iters": 2}]))
    with pytest.raises(ValueError, match="FreeInit cannot follow"):
        load_prompt_config(tmp_path / "c.yaml")
