"""benchmarks/gpu_check.py at its tiny size on CPU: every row's code runs and the table says what it measured."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_tiny_gpu_check_prints_its_table(one_thread):
    import gpu_check

    text = gpu_check.main(["--tiny", "--quiet", "--steps", "2"])
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    whats = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    assert whats == [
        "diffusers AnimateDiffPipeline", "ours", "ours --channels-last", "bf16 frames vs fp32",
        "ours 8 frames, windows of 6", "ours, VAE tiling", "ours, FFN chunks of 1024",
    ]  # fmt: skip
    ours = rows[1].split(" | ")
    assert ours[1] == "bf16" and float(ours[2]) > 0 and float(ours[4]) > 0  # s/step and its ratio to diffusers
    assert float(rows[2].split(" | ")[2]) > 0  # channels-last s/step
    assert "finite True" in rows[3]
    assert float(rows[3].split("max ")[1].split(",")[0]) < 0.25  # bf16 near fp32
