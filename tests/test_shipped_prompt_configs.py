"""The prompt configs the repository ships (configs/prompts/) parse, name files that exist, and run offline."""

from pathlib import Path

import pytest
import yaml

from animatediff.prompt_config import load_prompt_config, run_prompt_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted([*(ROOT / "configs" / "prompts").rglob("*.yaml"), *(ROOT / "configs" / "prompts").rglob("*.json")])
"""The official layout's YAML lists, and animatediff-cli-prompt-travel's JSON documents (one entry each)."""


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_a_shipped_prompt_config_names_files_that_exist(config):
    entries, _ = load_prompt_config(config)
    for entry in entries:
        paths = [entry.base, entry.dreambooth_path, entry.lora_model_path, *entry.motion_module]
        paths += [c["path"] for c in [*entry.motion_module_lora_configs, *entry.lora_configs]]
        assert all((ROOT / p).exists() for p in paths if p), config


def test_the_shipped_world_configs_run_as_written(tmp_path, monkeypatch, one_thread):
    assert len(CONFIGS) >= 3
    monkeypatch.chdir(ROOT)  # paths in the configs are relative to the repository root, as in the official repo
    for config in CONFIGS:
        raw = yaml.safe_load(config.read_text())  # JSON is YAML too
        entries = [raw] if isinstance(raw, dict) else raw  # a prompt-travel document is one entry
        quick = [
            {**e, "steps": 2}
            if "prompt_map" in e
            else {**e, "steps": 2, "L": 2, "prompt": e["prompt"][:1], "seed": e["seed"][:1]}
            for e in entries
        ]
        quick = quick[0] if isinstance(raw, dict) else quick
        short = tmp_path / config.name
        short.write_text(yaml.safe_dump(quick))
        out = run_prompt_config(short, ROOT / "animatediff/assets/world/base", tmp_path / "runs", progress=False)
        assert len(list((out / "sample").glob("*.gif"))) == len(entries)


def test_run_without_a_base_animates_with_the_embedded_one(tmp_path):
    from animatediff.cli import main

    entry = {
        "motion_module": str(ROOT / "animatediff/assets/world/motion_module.safetensors"),
        "prompt": ["a red circle"],
    }
    config = tmp_path / "plain.yaml"
    config.write_text(yaml.safe_dump([{**entry, "steps": 2, "L": 2, "seed": 1}]))
    assert main(["run", str(config), "--output-dir", str(tmp_path / "runs"), "--quiet"]) == 0
    assert len(list((tmp_path / "runs").glob("plain-*/sample/*.gif"))) == 1
