"""The shipped world model (animatediff/assets/world): generation out of the box, measured on its own frames."""

import numpy as np
import pytest
import torch

from animatediff.defaults import WORLD_ASSETS, default_models
from animatediff.pipeline import AnimationPipeline
from animatediff.world.evaluate import evaluate_row, evaluation_prompts, pipeline_rows

PROMPTS = 6  # one per measured motion: left, right, up, down, growing, shrinking
STEPS = 15


@pytest.fixture(scope="module")
def pipe():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield AnimationPipeline.from_pretrained(*default_models())
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def rows(pipe):
    """(with the motion module, frames generated independently) on the same prompts and seed."""
    prompts = evaluation_prompts(PROMPTS)
    return [evaluate_row(name, g, prompts, [0]) for name, g in pipeline_rows(pipe, steps=STEPS).items()]


def test_shipped_weights_are_fp16_and_small():
    from safetensors import safe_open

    base, motion = default_models()
    size = sum(p.stat().st_size for p in WORLD_ASSETS.rglob("*") if p.is_file())
    assert size < 30 * 2**20
    for file in (motion, base / "unet" / "diffusion_pytorch_model.safetensors"):
        with safe_open(str(file), "pt") as f:
            assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())


def test_default_generation_is_a_16_frame_32px_clip(pipe):
    frames = pipe("a red circle moving right on a blue background", seed=0, num_inference_steps=5, progress=False)
    assert frames.shape == (1, 16, 32, 32, 3) and np.isfinite(frames).all()


def test_motion_module_keeps_the_object_and_its_colour(rows):
    with_module, independent = rows
    assert with_module.colour_accuracy >= 0.8
    # Measured on 24 clips: consistency 0.70 with the module, 0.00 with independent frames.
    assert with_module.consistency >= independent.consistency + 0.3


@pytest.mark.xfail(
    strict=True,
    reason="the first shipped motion module does not yet follow the captioned direction (motion accuracy 0.12 "
    "over 24 clips); see animatediff/world/README.md",
)
def test_motion_module_gets_the_captioned_motion(rows):
    with_module, independent = rows
    assert with_module.motion_accuracy >= 0.6
    assert with_module.motion_accuracy >= independent.motion_accuracy + 0.25
