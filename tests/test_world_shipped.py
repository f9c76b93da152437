"""The shipped world model (animatediff/assets/world): generation out of the box, and what its motion module
measurably does compared with frames generated independently."""

import numpy as np
import pytest
import torch

from animatediff.defaults import default_models
from animatediff.pipeline import AnimationPipeline
from animatediff.world.evaluate import evaluate_row, evaluation_prompts, pipeline_rows


@pytest.fixture(scope="module")
def pipe():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield AnimationPipeline.from_pretrained(*default_models())
    torch.set_num_threads(threads)


def test_shipped_weights_are_fp16_and_small():
    base, motion = default_models()
    size = sum(p.stat().st_size for p in base.parent.rglob("*") if p.is_file())
    assert size < 30 * 2**20
    assert motion.stat().st_size > 0


def test_default_generation_is_a_16_frame_32px_clip(pipe):
    frames = pipe("a red circle moving right on a blue background", seed=0, num_inference_steps=10, progress=False)
    assert frames.shape == (1, 16, 32, 32, 3) and np.isfinite(frames).all()


def test_motion_module_keeps_the_object_consistent_where_independent_frames_do_not(pipe):
    # Measured on the shipped build (`animatediff world eval --prompts 12 --seeds 2`): consistency 0.70 with the
    # motion module vs 0.00 for frames generated independently; colour accuracy 1.00 vs 0.92. The captioned
    # direction is not yet followed (motion accuracy 0.12), so it is not asserted here.
    prompts = evaluation_prompts(6)
    with_module, independent = (evaluate_row(name, g, prompts, [0]) for name, g in pipeline_rows(pipe).items())
    assert with_module.consistency >= 0.5
    assert with_module.consistency >= independent.consistency + 0.4
    assert with_module.colour_accuracy >= 0.8
