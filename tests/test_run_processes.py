"""`animatediff run` spread over two processes (torchrun on CPUs, as `accelerate launch` does on GPUs): every
video drawn once, into the one official layout, the same files as one process draws."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from animatediff.cli import main

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a red circle moving right", "a blue square moving up", "a green triangle moving left"]


def config(tmp_path: Path) -> Path:
    from animatediff.world.layout import embedded_models

    module = str(embedded_models().motion_module)
    entries = [
        {"prompt": PROMPTS, "motion_module": [module], "seed": [11, 12, 13], "steps": 3, "L": 4},
        {"prompt": ["a yellow cross growing"], "motion_module": [module], "seed": -1, "steps": 3, "L": 4},
    ]
    path = tmp_path / "spread.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SHARE = """
import os, sys
from pathlib import Path
from animatediff.process_share import process_share
share = process_share()
values = [share.index, share.count, share.broadcast(os.environ["RANK"])]
Path(sys.argv[1], os.environ["RANK"]).write_text(" ".join(map(str, values)))
"""


@pytest.mark.parametrize("launch_number", range(4))
def test_each_process_of_two_has_its_share_and_the_main_processs_values_and_exits_cleanly(launch_number, tmp_path):
    """Under torchrun on CPUs (which does not tell Accelerate it is on CPUs) each process knows it is one of two;
    both exit 0 (a process group left to the interpreter's teardown aborted about one launch in four, hence four)."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launch += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "--no-python", sys.executable]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["-c", SHARE, str(tmp_path)]
    proc = subprocess.run([*launch, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    values = {path.name: path.read_text() for path in tmp_path.iterdir()}
    assert values == {"0": "0 2 0", "1": "1 2 0"}, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_draw_every_video_once_as_one_process_does(tmp_path, one_thread):
    cfg = config(tmp_path)
    assert main(["run", str(cfg), "--output-dir", str(tmp_path / "one"), "--quiet"]) == 0
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launch += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "animatediff"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["run", str(cfg), "--output-dir", str(tmp_path / "two"), "--quiet"]
    proc = subprocess.run([*launch, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    runs = {name: sorted((tmp_path / name).iterdir()) for name in ("one", "two")}
    assert [len(folders) for folders in runs.values()] == [1, 1], runs  # one run folder each
    [one], [two] = runs.values()
    names = sorted(p.name for p in (two / "sample").iterdir())
    assert names == sorted(p.name for p in (one / "sample").iterdir())
    assert [n.split("-")[0] for n in names] == ["0", "1", "2", "3"]
    for name in names[:3]:  # fixed seeds, one thread each: the very same GIFs
        assert (two / "sample" / name).read_bytes() == (one / "sample" / name).read_bytes()
    seeds = [entry["random_seed"] for entry in yaml.safe_load((two / "config.yaml").read_text())]
    assert seeds[0] == [11, 12, 13] and len(seeds[1]) == 1 and seeds[1][0] != -1
    assert (two / "sample.gif").is_file()
