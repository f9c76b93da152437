"""Non-finite losses and gradients: such a step is skipped and counted, a run of them stops training with a clear
error, and no checkpoint is written of non-finite weights (nor prunes a good one)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import yaml
from safetensors.torch import load_file

from animatediff.cli import main
from animatediff.errors import InputError
from animatediff.train.nonfinite import TrainingDiverged
from animatediff.train.trainer import Trainer
from tests.test_train_synthetic import fresh_accelerate_state, train_config  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")


def poison(trainer: Trainer, micro_batches: set[int], loss: bool = True, grads: bool = True) -> None:
    """Make the given micro-batches (counted from 1) give a NaN loss and/or an inf gradient, after the real
    forward and backward (so every random draw stays as in a clean run)."""
    real = trainer.loss_and_backward
    calls = itertools.count(1)

    def poisoned(batch: dict) -> torch.Tensor:
        value = real(batch)
        if next(calls) in micro_batches:
            if grads:
                first = next(p for p in trainer.trainable if p.grad is not None)
                first.grad.view(-1)[0] = math.inf
            if loss:
                value = value * math.nan
        return value

    trainer.loss_and_backward = poisoned


def _state(trainer: Trainer) -> dict:
    optimizer = trainer.optimizer.state_dict()["state"]
    return {
        "weights": {k: v.clone() for k, v in trainer.unet.motion_modules.state_dict().items()},
        "optimizer": {(i, k): v.clone() for i, s in optimizer.items() for k, v in s.items() if torch.is_tensor(v)},
        "lr_epoch": trainer.lr_scheduler.last_epoch,
    }


def _equal(a: dict, b: dict) -> bool:
    return (
        a["weights"].keys() == b["weights"].keys()
        and all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
        and a["optimizer"].keys() == b["optimizer"].keys()
        and all(torch.equal(a["optimizer"][k], b["optimizer"][k]) for k in a["optimizer"])
        and a["lr_epoch"] == b["lr_epoch"]
    )


@pytest.mark.parametrize(("loss", "grads"), [(True, True), (True, False), (False, True)], ids=["both", "loss", "grad"])
def test_a_nonfinite_step_is_skipped_counted_and_logged(base_folder, tmp_path, loss, grads):
    config = train_config(
        base_folder,
        tmp_path / "run",
        optim={"max_steps": 4, "lr_scheduler": "constant_with_warmup", "warmup_steps": 3},
        logging={"every": 1},
    )
    trainer = Trainer(config)
    poison(trainer, {2}, loss=loss, grads=grads)
    states, logged = {}, {}
    trainer.on_step = lambda t, step, _: states.__setitem__(step, _state(t))
    trainer.accelerator.log = lambda values, step=None, **_: logged.__setitem__(step, values)
    result = trainer.train()

    assert _equal(states[2], states[1])  # no update, no optimizer state change, no LR-schedule step
    assert not _equal(states[3], states[2])  # and training goes on
    assert states[3]["lr_epoch"] == states[1]["lr_epoch"] + 1
    assert trainer.guard.total == 1 and trainer.guard.streak == 0
    assert [logged[s]["train/nonfinite_steps"] for s in (1, 2, 3, 4)] == [0, 1, 1, 1]
    assert result["step"] == 4 and math.isfinite(result["loss"])
    state = yaml.safe_load((result["checkpoint"] / "trainer_state.json").read_text())
    assert state["nonfinite"] == {"streak": 0, "total": 1}


def test_a_nonfinite_loss_anywhere_in_an_accumulation_window_skips_its_step(base_folder, tmp_path):
    # The first of two micro-batches has a NaN loss, the gradients stay finite: the step is still skipped.
    config = train_config(
        base_folder, tmp_path / "run", optim={"batch_size": 1, "gradient_accumulation_steps": 2, "max_steps": 2}
    )
    trainer = Trainer(config)
    poison(trainer, {1}, loss=True, grads=False)
    before = _state(trainer)
    states = {}
    trainer.on_step = lambda t, step, _: states.__setitem__(step, _state(t))
    trainer.train()
    assert _equal(states[1], before)
    assert not _equal(states[2], states[1])
    assert trainer.guard.total == 1


def test_nonfinite_steps_in_a_row_stop_the_run_and_keep_the_good_checkpoint(base_folder, tmp_path):
    config = train_config(
        base_folder,
        tmp_path / "run",
        optim={"max_steps": 8, "max_nonfinite_steps": 3},
        checkpoint={"every": 1, "keep_last": 1},
    )
    trainer = Trainer(config)
    poison(trainer, set(range(2, 100)))
    with pytest.raises(TrainingDiverged, match=r"not finite for 3 optimizer steps in a row \(steps 2-4") as err:
        trainer.train()
    assert isinstance(err.value, InputError)
    assert "optim.max_nonfinite_steps is 3" in str(err.value) and "checkpoint-00000001" in str(err.value)
    assert trainer.step == 4
    # No checkpoint while non-finite steps ran on, so keep_last pruned nothing good.
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["checkpoint-00000001"]


def test_a_checkpoint_due_at_a_nonfinite_step_waits_for_the_next_finite_one(base_folder, tmp_path):
    config = train_config(base_folder, tmp_path / "run", optim={"max_steps": 4}, checkpoint={"every": 2})
    trainer = Trainer(config)
    poison(trainer, {2})
    trainer.train()
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["checkpoint-00000003", "checkpoint-00000004"]


def test_nonfinite_weights_are_never_checkpointed(base_folder, tmp_path):
    config = train_config(
        base_folder, tmp_path / "run", optim={"max_steps": 4}, checkpoint={"every": 1, "keep_last": 1}
    )
    trainer = Trainer(config)

    def break_weights(t: Trainer, step: int, _: float) -> None:
        if step == 2:
            with torch.no_grad():
                t.trainable[0].view(-1)[0] = math.nan

    trainer.on_step = break_weights
    with pytest.raises(TrainingDiverged, match="non-finite values at step 2; not writing a checkpoint"):
        trainer.train()
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-00000001"]
    exported = load_file(root / "checkpoint-00000001" / "motion_module.safetensors")
    assert all(torch.isfinite(v).all() for v in exported.values())


def test_cli_stops_a_diverging_run_with_one_line_and_exit_2(base_folder, tmp_path, capsys, caplog):
    # The run: the loss goes NaN at step 3 and stays so.
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(train_config(base_folder, tmp_path / "run").to_dict()))
    overrides = ["optim.max_steps=8", "checkpoint.every=4", "optim.learning_rate=1e4", "optim.max_grad_norm=0"]
    assert main(["train", str(path), *overrides]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("animatediff train: error:")]
    assert len(lines) == 1 and "training diverged" in lines[0] and "max_nonfinite_steps is 5" in lines[0]
    skips = [r.getMessage() for r in caplog.records if "optimizer step skipped" in r.getMessage()]
    assert [m.split(":")[0] for m in skips] == ["step 3", "step 4", "step 5", "step 6", "step 7"]  # each one told
    for export in (tmp_path / "run" / "checkpoints").rglob("motion_module.safetensors"):
        assert all(torch.isfinite(v).all() for v in load_file(export).values()), export


def test_max_nonfinite_steps_must_be_positive(base_folder, tmp_path):
    with pytest.raises(InputError, match="optim.max_nonfinite_steps must be at least 1"):
        train_config(base_folder, tmp_path, optim={"max_nonfinite_steps": 0})
