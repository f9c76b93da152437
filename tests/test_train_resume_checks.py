"""What a run checks before its models load, and what a resume checks: a writable output_dir, PEFT for a
MotionLoRA, the same run (paths resolved, steps, workers for shards), and checkpoint files that are whole and
plain data, never unpickled with code."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

from animatediff.cli import main
from animatediff.errors import InputError
from animatediff.train.resume import check_resumable
from animatediff.train.trainer import Trainer
from tests.test_train_synthetic import fresh_accelerate_state, train_config  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")


def _stub_base(folder: Path) -> Path:
    """Only the base's config files: anything that loads weights fails loudly."""
    for part, cfg in (
        ("unet", {"block_out_channels": [32, 64], "layers_per_block": 2, "sample_size": 8}),
        ("vae", {"block_out_channels": [32, 32]}),
        ("text_encoder", {}),
        ("tokenizer", {}),
    ):
        (folder / part).mkdir(parents=True)
        (folder / part / "config.json").write_text(json.dumps(cfg))
    return folder


def _write_config(path: Path, config) -> Path:  # noqa: ANN001 - TrainConfig
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def _one_line_error(capsys) -> str:  # noqa: ANN001
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("animatediff train: error:")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


# ----------------------------------------------------------------------------------- before models load


@pytest.mark.parametrize("where", ["output_dir", "parent"])
def test_an_output_dir_that_is_a_file_fails_before_models_load(tmp_path, capsys, where):
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    output_dir = blocker if where == "output_dir" else blocker / "run"
    config = train_config(_stub_base(tmp_path / "base"), output_dir)
    with pytest.raises(InputError, match=f"output_dir {output_dir / 'checkpoints'}: {blocker} is a file"):
        Trainer(config)
    assert main(["train", str(_write_config(tmp_path / "c.yaml", config))]) == 2
    assert "output_dir" in _one_line_error(capsys)


def test_an_unwritable_output_dir_fails_before_models_load(tmp_path, monkeypatch):
    import animatediff.io.outputs as outputs

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", refuse)
    config = train_config(_stub_base(tmp_path / "base"), tmp_path / "run")
    with pytest.raises(
        InputError, match=r"output_dir .*run/checkpoints: cannot (create the folder|write in) .*\(Permission denied\)"
    ):
        Trainer(config)


def test_lora_without_peft_fails_before_models_load(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` raises ImportError
    config = train_config(
        _stub_base(tmp_path / "base"),
        tmp_path / "run",
        model={"init_motion_module": str(tmp_path / "missing.safetensors")},
        lora={"enabled": True},
    )
    with pytest.raises(InputError, match=r"lora.enabled \(MotionLoRA training\) needs peft, which is not installed"):
        Trainer(config)


# ----------------------------------------------------------------------------------------- same run


def test_paths_compare_resolved_on_resume(base_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips.csv").write_text("videoid,name,page_dir\n")
    (tmp_path / "other.csv").write_text("videoid,name,page_dir\n")
    relative = {"model": {"base": "base"}, "data": {"csv": "clips.csv"}}
    Trainer(train_config(base_folder, tmp_path / "run", optim={"max_steps": 1}, **relative)).train()

    absolute = {"model": {"base": str(base_folder)}, "data": {"csv": str(tmp_path / "clips.csv")}}
    resumed = train_config(
        base_folder, tmp_path / "run", optim={"max_steps": 2}, checkpoint={"resume_from": "latest"}, **absolute
    )
    assert Trainer(resumed).step == 1  # the same files, named absolutely

    other = train_config(
        base_folder,
        tmp_path / "run",
        optim={"max_steps": 2},
        checkpoint={"resume_from": "latest"},
        data={"csv": str(tmp_path / "other.csv")},
    )
    with pytest.raises(InputError, match=r"data.csv: checkpoint 'clips.csv' \(.*clips.csv'\), now .*other.csv"):
        Trainer(other)


def test_resuming_beyond_max_steps_is_refused_and_at_max_steps_says_so(base_folder, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(train_config(base_folder, run, optim={"max_steps": 2})).train()
    path = _write_config(tmp_path / "c.yaml", train_config(base_folder, run, checkpoint={"resume_from": "latest"}))
    assert main(["train", str(path), "optim.max_steps=1"]) == 2
    line = _one_line_error(capsys)
    assert f"checkpoint {run / 'checkpoints' / 'checkpoint-00000002'} is at step 2, beyond optim.max_steps 1" in line
    # Resuming a finished run trains nothing, and says where its result is.
    assert main(["train", str(path), "optim.max_steps=2", "logging.progress=true"]) == 0
    out = capsys.readouterr().out
    assert "at step 2: " in out and "nothing to train, optim.max_steps is 2" in out
    assert f"trained to step 2; last checkpoint {run / 'checkpoints' / 'checkpoint-00000002'}" in out


def _fake_checkpoint(folder: Path, config) -> Path:  # noqa: ANN001 - TrainConfig
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"step": 1, "num_processes": 1, "config": config.to_dict()}))
    return folder


@pytest.mark.parametrize("kind", ["shards", "synthetic"])
def test_a_different_worker_count_resumes(tmp_path, kind):
    """The clips' order does not depend on the number of DataLoader workers, for shards either
    (tests/test_data_shard_order.py), so a run may resume with another."""
    data = {"kind": kind, "shards": [str(tmp_path / "shard-000000.tar")], "num_workers": 2}
    saved = train_config(tmp_path / "base", tmp_path / "run", data=data)
    checkpoint = _fake_checkpoint(tmp_path / "checkpoint", saved)
    now = train_config(tmp_path / "base", tmp_path / "run", data={**data, "num_workers": 4})
    assert check_resumable(checkpoint, now, 1)["step"] == 1


def test_negative_checkpoint_counts_are_refused(tmp_path):
    with pytest.raises(InputError, match="checkpoint.keep_last must be at least 0, got -1"):
        train_config(tmp_path, tmp_path, checkpoint={"keep_last": -1})


def test_the_start_up_line_says_what_resumes_from_where(base_folder, tmp_path, capsys):
    Trainer(train_config(base_folder, tmp_path / "run", optim={"max_steps": 1}, logging={"progress": True})).train()
    assert "training new v3 motion module (zero proj_out): " in capsys.readouterr().out
    resumed = train_config(
        base_folder,
        tmp_path / "run",
        optim={"max_steps": 2},
        logging={"progress": True},
        checkpoint={"resume_from": "latest"},
    )
    Trainer(resumed).train()
    out = capsys.readouterr().out
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-00000001"
    assert f"resuming the v3 motion module of this run from {checkpoint} at step 1: " in out
    assert "new v3" not in out


# ----------------------------------------------------------------------------------- checkpoint files


class _Payload:
    """Unpickling this creates a file: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


TORCH_FILES = ["accelerate/custom_checkpoint_0.pkl", "accelerate/optimizer.bin", "accelerate/random_states_0.pkl"]
TORCH_FILES += ["rank/0.pt"]


def _copies(base_folder: Path, tmp_path: Path, names: list[str]) -> dict[str, tuple[Path, Path]]:
    """A one-step run's checkpoint, copied once per name: {name: (copy, config file resuming from it)}."""
    Trainer(train_config(base_folder, tmp_path / "run", optim={"max_steps": 1})).train()
    original = tmp_path / "run" / "checkpoints" / "checkpoint-00000001"
    out = {}
    for i, name in enumerate(names):
        copy = tmp_path / f"copy{i}" / "checkpoint-00000001"
        shutil.copytree(original, copy)
        config = train_config(
            base_folder, tmp_path / f"resumed{i}", optim={"max_steps": 2}, checkpoint={"resume_from": str(copy)}
        )
        out[name] = (copy, _write_config(tmp_path / f"c{i}.yaml", config))
    return out


def test_a_crafted_pickle_in_a_checkpoint_is_refused_and_never_run(base_folder, tmp_path, capsys):
    for name, (copy, config_file) in _copies(base_folder, tmp_path, TORCH_FILES).items():
        marker = tmp_path / f"PWNED-{copy.parent.name}"
        torch.save({"state": _Payload(marker)}, copy / name)
        assert main(["train", str(config_file)]) == 2, name
        line = _one_line_error(capsys)
        assert f"refusing to load {copy / name}" in line and "could run code" in line, line
        assert not marker.exists(), name


def test_a_truncated_checkpoint_file_is_named(base_folder, tmp_path):
    names = [*TORCH_FILES[1:], "accelerate/model.safetensors", "trainer_state.json"]
    for name, (copy, _) in _copies(base_folder, tmp_path, names).items():
        data = (copy / name).read_bytes()
        (copy / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError, match="truncated or damaged") as err:
            Trainer(train_config(base_folder, tmp_path / "x", checkpoint={"resume_from": str(copy)}))
        assert str(copy / name) in str(err.value), name
        assert "\n" not in str(err.value)


def test_an_older_checkpoint_with_accelerates_pickled_lr_schedule_still_resumes(base_folder, tmp_path):
    # Checkpoints written before the LR schedule moved into trainer_state.json hold it where Accelerate put it.
    sections = dict(
        optim={"max_steps": 3, "lr_scheduler": "constant_with_warmup", "warmup_steps": 3},
        checkpoint={"every": 1, "resume_from": "latest"},
    )
    whole = Trainer(train_config(base_folder, tmp_path / "whole", **sections))
    whole.train()
    Trainer(train_config(base_folder, tmp_path / "run", **sections)).train(stop_after=2)
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-00000002"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    torch.save(state.pop("lr_scheduler"), checkpoint / "accelerate" / "custom_checkpoint_0.pkl")
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    resumed = Trainer(train_config(base_folder, tmp_path / "run", **sections))
    assert resumed.lr_scheduler.last_epoch == 2
    resumed.train()
    assert resumed.lr_scheduler.state_dict() == whole.lr_scheduler.state_dict()
    a, b = whole.unet.motion_modules.state_dict(), resumed.unet.motion_modules.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
