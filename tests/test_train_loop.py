"""The training loop on a tiny SD1.x model and synthetic clips: what trains, what stays frozen, resuming."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from animatediff.base_model import load_base
from animatediff.formats.motion_module_files import save_motion_modules
from animatediff.train.trainer import Trainer
from tests.test_train_synthetic import fresh_accelerate_state, train_config  # noqa: F401 - fixtures
from tests.tiny import tiny_motion

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_base_stays_bit_for_bit_and_only_motion_weights_change(base_folder, tmp_path):
    trainer = Trainer(train_config(base_folder, tmp_path / "run", optim={"max_steps": 3}))
    frozen = {
        name: _snapshot(part)
        for name, part in (("unet", trainer.unet.unet), ("vae", trainer.vae), ("text_encoder", trainer.text_encoder))
    }
    motion_before = _snapshot(trainer.unet.motion_modules)
    assert all(not p.requires_grad for p in trainer.unet.unet.parameters())
    assert {id(p) for p in trainer.trainable} == {id(p) for p in trainer.unet.motion_modules.parameters()}

    trainer.train()

    for name, part in (("unet", trainer.unet.unet), ("vae", trainer.vae), ("text_encoder", trainer.text_encoder)):
        after = part.state_dict()
        assert all(torch.equal(frozen[name][k], after[k]) for k in frozen[name]), f"{name} changed"
    # ... and equal to the weights on disk.
    fresh = load_base(base_folder)
    for k, v in fresh.unet.state_dict().items():
        assert torch.equal(v, trainer.unet.unet.state_dict()[k])
    motion_after = trainer.unet.motion_modules.state_dict()
    changed = [k for k in motion_before if not torch.equal(motion_before[k], motion_after[k])]
    assert len(changed) == len(motion_before)


def test_overfitting_one_batch_drives_the_loss_down(base_folder, tmp_path):
    config = train_config(
        base_folder,
        tmp_path / "run",
        data={"synthetic_clips": 2},
        optim={"max_steps": 40, "learning_rate": 3e-3, "caption_dropout": 0.0},
    )
    trainer = Trainer(config)
    start = trainer.generator.get_state()
    losses = []

    def same_noise_every_step(t: Trainer, step: int, loss: float) -> None:
        losses.append(loss)
        t.generator.set_state(start)  # the same batch, noise and timesteps every step: pure memorization

    trainer.on_step = same_noise_every_step
    trainer.train()
    assert losses[-1] < losses[0] / 4, losses


def _motion_weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.unet.motion_modules.state_dict().items()}


@pytest.mark.slow
def test_kill_and_resume_equals_an_uninterrupted_run(base_folder, tmp_path):
    # Accumulation over 2 micro-batches and 3 micro-batches per epoch: steps straddle epochs; warmup makes the
    # LR schedule's state matter; caption dropout, noise and timesteps make the generator's state matter.
    sections = dict(
        data={"synthetic_clips": 3},
        optim={
            "batch_size": 1,
            "gradient_accumulation_steps": 2,
            "max_steps": 5,
            "lr_scheduler": "constant_with_warmup",
            "warmup_steps": 3,
            "caption_dropout": 0.5,
        },
        checkpoint={"every": 2, "keep_last": 2, "resume_from": "latest"},
    )
    whole = Trainer(train_config(base_folder, tmp_path / "whole", **sections))
    whole.train()

    killed = Trainer(train_config(base_folder, tmp_path / "split", **sections))
    killed.train(stop_after=3)  # "killed" after step 3: the newest checkpoint is step 2
    assert killed.step == 3

    resumed = Trainer(train_config(base_folder, tmp_path / "split", **sections))
    assert resumed.step == 2 and resumed.resume_path.name == "checkpoint-00000002"
    resumed.train()
    assert resumed.step == 5
    a, b = _motion_weights(whole), _motion_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.lr_scheduler.get_last_lr() == whole.lr_scheduler.get_last_lr()
    # Keep-last-2 pruned the oldest.
    names = sorted(p.name for p in (tmp_path / "split" / "checkpoints").iterdir())
    assert names == ["checkpoint-00000004", "checkpoint-00000005"]


def test_gradient_checkpointing_gives_the_same_gradients(base_folder, tmp_path):
    # v1: the clip-wide ResNet norms need the frame count again when backward recomputes them.
    init = save_motion_modules(tiny_motion("v1"), tmp_path / "v1.safetensors")
    grads = []
    for checkpointing in (False, True):
        trainer = Trainer(
            train_config(
                base_folder,
                tmp_path / f"run{checkpointing}",
                gradient_checkpointing=checkpointing,
                model={"init_motion_module": str(init)},
            )
        )
        batch = next(iter(trainer.loader.epoch(0)))
        trainer.loss_and_backward(batch)
        grads.append({n: p.grad.clone() for n, p in trainer.unet.motion_modules.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)
    assert any(g.abs().sum() > 0 for g in grads[0].values())


def test_v_prediction_trains_on_velocity(base_folder, tmp_path):
    trainer = Trainer(train_config(base_folder, tmp_path / "run", model={"prediction_type": "v_prediction"}))
    assert trainer.noise_scheduler.config.prediction_type == "v_prediction"
    assert Trainer(train_config(base_folder, tmp_path / "run2")).prediction_type == "epsilon"  # from the base
    result = trainer.train()
    assert result["step"] == 3 and result["loss"] == result["loss"]  # finite


def test_validation_writes_animations_without_disturbing_training(base_folder, tmp_path):
    validation = {
        "every": 2,
        "prompts": ["a red square moving right"],
        "num_frames": 4,
        "resolution": 16,
        "num_inference_steps": 2,
    }
    plain = Trainer(train_config(base_folder, tmp_path / "plain", optim={"max_steps": 3}))
    plain.train()
    validated = Trainer(
        train_config(
            base_folder,
            tmp_path / "run",
            optim={"max_steps": 3},
            validation=validation,
            logging={"report_to": "tensorboard", "every": 1},
        )
    )
    validated.train()
    gifs = sorted((tmp_path / "run" / "validation").rglob("*.gif"))
    assert [g.parent.name for g in gifs] == ["step-00000002"]
    assert gifs[0].name == "0-a-red-square-moving-right.gif"
    assert all(p.requires_grad for p in validated.trainable)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "logs" / "animatediff-train"))
    events.Reload()
    assert "validation/0-a-red-square-moving-right" in events.Tags()["images"]
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    a, b = plain.unet.motion_modules.state_dict(), validated.unet.motion_modules.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_keeps_the_base_in_bf16_and_trains_fp32_motion_weights(base_folder, tmp_path):
    config = train_config(base_folder, tmp_path / "run", precision="bf16", gradient_checkpointing=True)
    trainer = Trainer(config)
    assert trainer.unet.unet.dtype == trainer.vae.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in trainer.trainable)
    result = trainer.train()
    assert result["step"] == 3 and torch.isfinite(torch.tensor(result["loss"]))


KILLABLE = """
import sys, time
from pathlib import Path

import torch

from animatediff.train.trainer import Trainer
from tests.test_train_synthetic import train_config

torch.set_num_threads(1)
sections = eval(sys.argv[3])
trainer = Trainer(train_config(Path(sys.argv[1]), Path(sys.argv[2]), **sections))
trainer.on_step = lambda t, step, loss: time.sleep(0.3)  # slow enough to be killed mid-run
trainer.train()
"""


def kill_when(script: str, sections: dict, base_folder: Path, tmp_path: Path, appears: Path) -> None:
    """Train with `script` in a subprocess into tmp_path/split, and SIGKILL it as soon as `appears` exists."""
    path = tmp_path / "killable.py"
    path.write_text(script)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(path), str(base_folder), str(tmp_path / "split"), repr(sections)]
    proc = subprocess.Popen(args, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600  # only against a hung child: a loaded machine may take minutes to start it
    while not appears.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(base_folder, tmp_path):
    sections = dict(
        optim={"batch_size": 1, "max_steps": 8}, checkpoint={"every": 1, "keep_last": 2, "resume_from": "latest"}
    )
    third = tmp_path / "split" / "checkpoints" / "checkpoint-00000003" / "trainer_state.json"
    kill_when(KILLABLE, sections, base_folder, tmp_path, third)

    resumed = Trainer(train_config(base_folder, tmp_path / "split", **sections))
    assert 3 <= resumed.step < 8
    resumed.train()
    whole = Trainer(train_config(base_folder, tmp_path / "whole", **sections))
    whole.train()
    a, b = whole.unet.motion_modules.state_dict(), resumed.unet.motion_modules.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


KILLABLE_WHILE_SAVING = """
import sys, time
from pathlib import Path

import torch

from animatediff.train.trainer import Trainer
from tests.test_train_synthetic import train_config

torch.set_num_threads(1)
sections = eval(sys.argv[3])
trainer = Trainer(train_config(Path(sys.argv[1]), Path(sys.argv[2]), **sections))
export = trainer.export
# Slow enough to be killed while a checkpoint is written: its exports are there, its rename is not.
trainer.export = lambda folder: (export(folder), time.sleep(1.0))
trainer.train()
"""


@pytest.mark.slow
def test_sigkill_while_a_checkpoint_is_written_then_resume_equals_an_uninterrupted_run(base_folder, tmp_path):
    sections = dict(
        optim={"batch_size": 1, "max_steps": 6}, checkpoint={"every": 1, "keep_last": 2, "resume_from": "latest"}
    )
    checkpoints = tmp_path / "split" / "checkpoints"
    half_written = checkpoints / ".tmp-checkpoint-00000003" / "motion_module.safetensors"
    kill_when(KILLABLE_WHILE_SAVING, sections, base_folder, tmp_path, half_written)

    resumed = Trainer(train_config(base_folder, tmp_path / "split", **sections))
    assert resumed.step == 2 and not (checkpoints / "checkpoint-00000003").exists()  # the half-written one is not taken
    resumed.train()
    assert not any(p.name.startswith(".") for p in checkpoints.iterdir())  # and its leftovers were cleared
    whole = Trainer(train_config(base_folder, tmp_path / "whole", **sections))
    whole.train()
    a, b = whole.unet.motion_modules.state_dict(), resumed.unet.motion_modules.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
