"""`animatediff world ablate NAME`: each ablation's plumbing at a seconds-long budget on the embedded world (the
findings come from the full budget; the world README holds them), and its one-line errors before any training."""

from __future__ import annotations

import json

import pytest

from animatediff.cli import main
from animatediff.errors import InputError
from animatediff.world.ablate import SCHEDULES, AblationSettings, quick_settings, run_ablation
from tests.test_train_synthetic import fresh_accelerate_state  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")


def _figures(result) -> dict[str, dict]:
    return {v.name: v.figures for v in result.variants}


def test_schedule_ablation_trains_each_schedule_and_writes_its_table(tmp_path):
    result = run_ablation("schedule", tmp_path, quick_settings(), progress=False)
    assert list(_figures(result)) == list(SCHEDULES)
    for figures in _figures(result).values():
        assert 0 <= figures["motion_accuracy"] <= 1 and figures["clips"] == 1
        assert figures["frame_change"] > 0
    table = (tmp_path / "schedule.md").read_text()
    assert table.startswith("| variant | motion accuracy |") and "A: scaled linear" in table
    saved = json.loads((tmp_path / "schedule.json").read_text())
    assert saved["command"] == "animatediff world ablate schedule" and len(saved["variants"]) == 3
    # The runs trained on their schedules.
    for run, (schedule, start, end) in zip("abc", SCHEDULES.values()):
        state = json.loads(
            next((tmp_path / "runs" / f"schedule-{run}" / "checkpoints").glob("*/trainer_state.json")).read_text()
        )
        optim = state["config"]["optim"]
        assert (optim["beta_schedule"], optim["beta_start"], optim["beta_end"]) == (schedule, start, end)
    # A rerun trains nothing and gives the same table.
    again = run_ablation("schedule", tmp_path, quick_settings(), progress=False)
    assert _figures(again) == _figures(result)


def test_adapter_ablation_samples_at_each_alpha_and_reports_the_watermark(tmp_path):
    result = run_ablation("adapter", tmp_path, quick_settings(), progress=False)
    names = list(_figures(result))
    assert names == [
        "module over base + adapter, sampled at α = 1",
        "module over base + adapter, sampled at α = 0",
        "module over the plain base (no adapter)",
    ]
    assert all(0 <= f["watermark_rate"] <= 1 for f in _figures(result).values())
    assert (tmp_path / "runs" / "adapter" / "checkpoints").is_dir()


def test_motion_lora_ablation_covers_ranks_and_clip_counts(tmp_path):
    result = run_ablation("motion-lora", tmp_path, quick_settings(), progress=False)
    figures = _figures(result)
    assert list(figures) == ["motion module alone (growing)", "rank 2, 2 clips", "rank 4, 2 clips", "rank 8, 1 clip"]
    assert figures["rank 4, 2 clips"]["lora_parameters"] == 2 * figures["rank 2, 2 clips"]["lora_parameters"]


def test_bad_ablations_are_one_line_errors_before_training(tmp_path):
    with pytest.raises(InputError, match="unknown ablation 'shedule'.*did you mean 'schedule'"):
        run_ablation("shedule", tmp_path, quick_settings())
    with pytest.raises(InputError, match="MotionLoRA rank 128 is larger than the motion module's narrowest attention"):
        run_ablation("motion-lora", tmp_path, AblationSettings(ranks=(2, 128)))
    with pytest.raises(InputError, match="lora_motion 'spinning'"):
        run_ablation("motion-lora", tmp_path, AblationSettings(lora_motion="spinning"))
    assert not (tmp_path / "runs").exists()
    assert main(["world", "ablate", "schedule", "--set", "beta_schedule=cosine", "--output-dir", str(tmp_path)]) == 2


def test_design_ablation_sets_a_transformer_against_a_convolution(tmp_path):
    result = run_ablation("design", tmp_path, quick_settings(), progress=False)
    figures = _figures(result)
    assert list(figures) == ["temporal transformer", "temporal convolution"]
    ratio = figures["temporal convolution"]["parameters"] / figures["temporal transformer"]["parameters"]
    assert 0.85 < ratio < 1.15  # about the same parameter count, as in the paper
