"""Two processes on CPU (torchrun, gloo): DDP keeps the motion weights identical on both ranks after every step,
each rank sees its own data and noise, and the base model stays bit-for-bit unchanged; a non-finite loss on one
rank skips the step on both, and the logged skipped-clip counts are summed over ranks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import torch
    import torch.distributed as dist

    from animatediff.train.trainer import Trainer
    from tests.test_train_synthetic import train_config

    torch.set_num_threads(1)
    base, out = Path(sys.argv[1]), Path(sys.argv[2])
    trainer = Trainer(train_config(base, out, optim={"batch_size": 1, "max_steps": 3}, checkpoint={"every": 2}))
    acc = trainer.accelerator
    frozen = [p.detach().clone() for part in (trainer.unet.unet, trainer.vae, trainer.text_encoder)
              for p in part.parameters()]
    steps = []

    def on_step(t, step, loss):
        flat = torch.cat([p.detach().flatten() for p in t.unet.motion_modules.parameters()])
        both = [torch.empty_like(flat) for _ in range(acc.num_processes)]
        dist.all_gather(both, flat)
        losses = [torch.zeros(1) for _ in range(acc.num_processes)]
        dist.all_gather(losses, torch.tensor([loss]))
        steps.append({"step": step, "identical": all(torch.equal(both[0], w) for w in both),
                      "losses": [float(x) for x in losses]})

    trainer.on_step = on_step
    result = trainer.train()
    after = [p for part in (trainer.unet.unet, trainer.vae, trainer.text_encoder) for p in part.parameters()]
    report = {
        "rank": acc.process_index,
        "num_processes": acc.num_processes,
        "distributed_type": str(acc.distributed_type),
        "steps": steps,
        "base_unchanged": all(torch.equal(a, b) for a, b in zip(frozen, after)),
        "checkpoint": str(result["checkpoint"]),
    }
    (out / f"rank{acc.process_index}.json").write_text(json.dumps(report))
    """
)


GUARDS_SCRIPT = textwrap.dedent(
    """
    import json, math, sys
    from pathlib import Path

    import torch
    import torch.distributed as dist

    from animatediff.data.synthetic import MovingSquares
    from animatediff.train.trainer import Trainer
    from tests.test_train_synthetic import train_config


    class Skipping(MovingSquares):
        # Rank 0 skipped one corrupt video, rank 1 one corrupt and one too short.
        @property
        def skipped(self):
            return {"corrupt": 1, "too_short": dist.get_rank()}


    torch.set_num_threads(1)
    base, out = Path(sys.argv[1]), Path(sys.argv[2])
    config = train_config(
        base, out, data={"kind": "custom"}, optim={"batch_size": 1, "max_steps": 3}, logging={"every": 1}
    )
    trainer = Trainer(config, dataset=Skipping(8, 4, 16, seed=42))
    acc = trainer.accelerator
    logged = {}
    acc.log = lambda values, step=None, **kwargs: logged.__setitem__(step, values)
    real, calls = trainer.loss_and_backward, [0]

    def nan_on_rank_1_at_step_2(batch):
        loss = real(batch)
        calls[0] += 1
        return loss * math.nan if acc.process_index == 1 and calls[0] == 2 else loss

    trainer.loss_and_backward = nan_on_rank_1_at_step_2
    weights = []

    def on_step(t, step, loss):
        flat = torch.cat([p.detach().flatten() for p in t.unet.motion_modules.parameters()])
        both = [torch.empty_like(flat) for _ in range(acc.num_processes)]
        dist.all_gather(both, flat)
        weights.append(both)

    trainer.on_step = on_step
    trainer.train()
    report = {
        "rank": acc.process_index,
        "identical": [torch.equal(w[0], w[1]) for w in weights],
        "step_2_changed": [not torch.equal(weights[1][r], weights[0][r]) for r in (0, 1)],
        "step_3_changed": [not torch.equal(weights[2][r], weights[1][r]) for r in (0, 1)],
        "nonfinite_total": trainer.guard.total,
        "logged": {str(k): v for k, v in logged.items()},
    }
    (out / f"rank{acc.process_index}.json").write_text(json.dumps(report))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(script_text: str, base_folder: Path, tmp_path: Path) -> list[dict]:
    """Run `script_text` on two CPU processes; the reports (rank<r>.json) they write into tmp_path/run."""
    script = tmp_path / "train_two.py"
    script.write_text(script_text)
    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
    ]
    proc = subprocess.run(
        [*torchrun, str(script), str(base_folder), str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_two_process_gloo_run_keeps_ranks_identical(base_folder, tmp_path):
    reports = _torchrun(SCRIPT, base_folder, tmp_path)
    for report in reports:
        assert report["num_processes"] == 2 and "MULTI_CPU" in report["distributed_type"]
        assert [s["step"] for s in report["steps"]] == [1, 2, 3]
        assert all(s["identical"] for s in report["steps"])
        assert report["base_unchanged"]
    # Different clips and noise on each rank (sharded data, per-rank seeds): different losses.
    assert all(s["losses"][0] != s["losses"][1] for s in reports[0]["steps"])
    checkpoint = Path(reports[0]["checkpoint"])
    assert sorted(p.name for p in (checkpoint / "rank").iterdir()) == ["0.pt", "1.pt"]
    assert (checkpoint / "motion_module.safetensors").is_file()


@pytest.mark.slow
def test_a_nonfinite_loss_on_one_rank_skips_the_step_on_both_and_skip_counts_are_summed(base_folder, tmp_path):
    reports = _torchrun(GUARDS_SCRIPT, base_folder, tmp_path)
    for report in reports:
        assert report["identical"] == [True, True, True]  # the ranks agreed on every step, the skipped one too
        assert report["step_2_changed"] == [False, False] and report["step_3_changed"] == [True, True]
        assert report["nonfinite_total"] == 1
    logged = reports[0]["logged"]
    assert [logged[s]["train/nonfinite_steps"] for s in ("1", "2", "3")] == [0, 1, 1]
    assert logged["3"]["data/skipped_corrupt"] == 2 and logged["3"]["data/skipped_too_short"] == 1
