"""Faults: training killed at random points — during steps and at every stage of a checkpoint write — and resumed
each time from the newest checkpoint ends bit for bit where an uninterrupted run does. The kills are in-process
(a BaseException nothing catches, raised at the chosen point); tests/test_train_loop.py kills real processes."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import torch

import animatediff.train.checkpoints as checkpoints
from animatediff.train.trainer import Trainer
from tests.test_train_synthetic import fresh_accelerate_state, train_config  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")

MAX_STEPS = 16
# Accumulation over 2 micro-batches and 3 micro-batches per epoch: steps straddle epochs; warmup makes the LR
# schedule's state matter; caption dropout, noise and timesteps make the generator's state matter.
SECTIONS = dict(
    data={"synthetic_clips": 3},
    optim={
        "batch_size": 1,
        "gradient_accumulation_steps": 2,
        "max_steps": MAX_STEPS,
        "lr_scheduler": "constant_with_warmup",
        "warmup_steps": 4,
        "caption_dropout": 0.5,
    },
    checkpoint={"every": 1, "keep_last": 2, "resume_from": "latest"},
)
# Where a kill can land: after an optimizer step, inside a micro-batch (after its backward), and in a checkpoint
# write after Accelerate's save_state, after the rank state, after the export, before and after the final
# rename, and while pruning.
STAGES = ("step", "micro", "save_state", "rank_state", "export", "before_rename", "after_rename", "prune")


class Killed(BaseException):
    """Stands for a SIGKILL: `except Exception` does not catch it, nothing after it runs."""


def _install(trainer: Trainer, monkeypatch: pytest.MonkeyPatch, stage: str, at: int, micro: int) -> None:
    """Kill `trainer` at `stage` of optimizer step `at` (for 'micro': in its `micro`-th micro-batch, 1 or 2)."""

    def saving() -> bool:
        return trainer.step == at

    def kill_after(real):  # noqa: ANN001, ANN202
        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            result = real(*args, **kwargs)
            if saving():
                raise Killed(stage)
            return result

        return wrapped

    if stage == "step":

        def on_step(t: Trainer, step: int, loss: float) -> None:
            if step == at:
                raise Killed(stage)

        trainer.on_step = on_step
    elif stage == "micro":
        real, calls = trainer.loss_and_backward, itertools.count(1)
        target = 2 * (at - trainer.step - 1) + micro

        def loss_and_backward(batch: dict) -> torch.Tensor:
            loss = real(batch)
            if next(calls) == target:
                raise Killed(stage)
            return loss

        trainer.loss_and_backward = loss_and_backward
    elif stage == "save_state":
        trainer.accelerator.save_state = kill_after(trainer.accelerator.save_state)
    elif stage == "rank_state":
        monkeypatch.setattr(checkpoints, "write_rank_state", kill_after(checkpoints.write_rank_state))
    elif stage == "export":
        trainer.export = kill_after(trainer.export)
    elif stage == "before_rename":
        real_publish = checkpoints.publish

        def publish(tmp: Path, final: Path) -> None:
            if saving():
                raise Killed(stage)
            real_publish(tmp, final)

        monkeypatch.setattr(checkpoints, "publish", publish)
    elif stage == "after_rename":
        monkeypatch.setattr(checkpoints, "publish", kill_after(checkpoints.publish))
    else:  # while pruning: after one old checkpoint is gone, or where pruning starts when none is due yet
        monkeypatch.setattr(checkpoints, "discard", kill_after(checkpoints.discard))
        monkeypatch.setattr(checkpoints, "prune", kill_after(checkpoints.prune))


def _final_state(trainer: Trainer) -> dict:
    optimizer = trainer.optimizer.state_dict()
    return {
        "weights": trainer.unet.motion_modules.state_dict(),
        "optimizer": {f"{i}.{k}": v for i, s in optimizer["state"].items() for k, v in s.items()},
        "param_groups": optimizer["param_groups"],
        "lr_scheduler": trainer.lr_scheduler.state_dict(),
        "generator": trainer.generator.get_state(),
        "position": (trainer.step, trainer.epoch, trainer.batch_in_epoch),
    }


def _assert_identical(a: dict, b: dict) -> None:
    assert a["position"] == b["position"]
    for part in ("weights", "optimizer"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            same = (
                torch.equal(a[part][key], b[part][key])
                if torch.is_tensor(a[part][key])
                else a[part][key] == b[part][key]
            )
            assert same, f"{part} {key}"
    assert a["param_groups"] == b["param_groups"] and a["lr_scheduler"] == b["lr_scheduler"]
    assert torch.equal(a["generator"], b["generator"])


@pytest.mark.slow
def test_twenty_random_kills_then_resumes_end_bit_identical(base_folder, tmp_path, monkeypatch):
    whole = Trainer(train_config(base_folder, tmp_path / "whole", **SECTIONS))
    whole.train()

    rng = random.Random(25)
    config = train_config(base_folder, tmp_path / "killed", **SECTIONS)
    kills, seen = 0, set()
    while True:
        trainer = Trainer(config)
        if kills == 20:
            trainer.train()
            break
        assert trainer.step < MAX_STEPS, "the kills came too late: the run finished first"
        # Mostly the next step, so that 20 kills fit in the run; now and then the one after.
        stage, at, micro = rng.choice(STAGES), trainer.step + rng.choice((1, 1, 1, 2)), rng.randint(1, 2)
        with monkeypatch.context() as patch:
            _install(trainer, patch, stage, at, micro)
            with pytest.raises(Killed):
                trainer.train()
        kills += 1
        seen.add(stage)
    assert seen == set(STAGES)
    _assert_identical(_final_state(trainer), _final_state(whole))
    root = tmp_path / "killed" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-00000015", "checkpoint-00000016"]  # no leftovers


def test_leftovers_of_killed_saves_are_never_resumed_and_are_cleared(base_folder, tmp_path):
    sections = dict(optim={"max_steps": 2}, checkpoint={"every": 1, "keep_last": 0, "resume_from": "latest"})
    Trainer(train_config(base_folder, tmp_path / "run", **sections)).train(stop_after=1)
    root = tmp_path / "run" / "checkpoints"
    good = root / "checkpoint-00000001"
    # A save killed before its rename, and a pruned checkpoint killed while being deleted (its state file left).
    for name in (".tmp-checkpoint-00000002", ".deleting-checkpoint-00000000"):
        (root / name).mkdir()
        (root / name / "trainer_state.json").write_text((good / "trainer_state.json").read_text())
    resumed = Trainer(train_config(base_folder, tmp_path / "run", **sections))
    assert resumed.resume_path == good
    resumed.train()
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-00000001", "checkpoint-00000002"]
