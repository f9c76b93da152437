"""`animatediff run` of a prompt-config entry and `animatediff generate` with the same settings build their pipeline
the same way (the base's noise settings and its own default guidance) and so draw the same frames."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image, ImageSequence

from animatediff.base_model import STATEMENT_FILE
from animatediff.cli import main
from animatediff.formats import save_motion_modules
from animatediff.world.layout import EMBEDDED
from tests.tiny import tiny_motion


def gif_frames(path) -> np.ndarray:  # noqa: ANN001
    return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))])


def run_and_generate(tmp_path, base, motion_module, prompt, seed, steps, frames, motion_lora=None):  # noqa: ANN001
    """Frames of the same clip made both ways: (run's GIF, generate's GIF)."""
    entry = {"motion_module": str(motion_module), "prompt": [prompt], "seed": seed, "steps": steps, "L": frames}
    if motion_lora is not None:
        entry["motion_module_lora_configs"] = [{"path": str(motion_lora), "alpha": 1.0}]
    config = tmp_path / "entry.yaml"
    config.write_text(yaml.safe_dump([entry]))
    assert main(["run", str(config), "--base", str(base), "--output-dir", str(tmp_path / "runs"), "--quiet"]) == 0
    (drawn,) = (tmp_path / "runs").glob("entry-*/sample/0-*.gif")
    out = tmp_path / "generated.gif"
    extra = ["--motion-lora", str(motion_lora)] if motion_lora is not None else []
    args = ["--base", str(base), "--motion-module", str(motion_module), "--prompt", prompt, "--seed", str(seed)]
    args += ["--steps", str(steps), "--frames", str(frames), "--output", str(out), "--quiet", *extra]
    assert main(["generate", *args]) == 0
    return gif_frames(drawn), gif_frames(out)


@pytest.mark.parametrize("stated_guidance", [None, 3.0])
def test_run_and_generate_draw_the_same_frames_of_a_tiny_model(tmp_path, base_folder, stated_guidance):
    if stated_guidance is not None:
        (base_folder / STATEMENT_FILE).write_text(json.dumps({"guidance_scale": stated_guidance}))
    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    ran, generated = run_and_generate(tmp_path, base_folder, motion, "a fox", seed=3, steps=3, frames=4)
    assert ran.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(ran, generated)


def test_run_and_generate_draw_the_same_frames_of_the_embedded_world(tmp_path):
    ran, generated = run_and_generate(
        tmp_path,
        EMBEDDED / "base",
        EMBEDDED / "motion_module.safetensors",
        "a red circle moving right on a blue background",
        seed=3,
        steps=8,
        frames=8,
        motion_lora=EMBEDDED / "motion_loras" / "right.safetensors",
    )
    assert ran.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(ran, generated)
