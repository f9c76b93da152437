"""The shipped world models (animatediff/assets/world): generation out of the box, and the paper's claim measured
on their own frames — a motion module trained once animates personalized models it never saw, with no tuning.

Fast versions of `animatediff world eval` (fewer prompts, one seed, 15 steps); the thresholds sit below what the
full evaluation measured (animatediff/assets/world/eval.md) by a margin for the smaller sample. What the shipped
build does not do yet — show the personalized looks in most frames — is kept as a strict xfail, so a build that
achieves it has to turn it into a plain test (see animatediff/world/README.md)."""

import os

import numpy as np
import pytest
import torch

from animatediff.pipeline import AnimationPipeline
from animatediff.world.cli import embedded_base_and_module as default_models
from animatediff.world.evaluate import evaluate_row, evaluation_prompts, motion_lora_row, pipeline_rows
from animatediff.world.layout import EMBEDDED as WORLD_ASSETS
from animatediff.world.layout import WORLD_GUIDANCE_SCALE, WorldModels
from animatediff.world.looks import LookConfig, load_look_classifier, look_accuracy

PROMPTS = 4  # one per direction: left, right, up, down (`world eval` measures growing and shrinking too)
STEPS = 15
MOTION_THRESHOLD = 0.6  # the module alone, base: measured 0.79 over 24 clips (every left/right/up/down clip)
LOOK_THRESHOLD = 0.6  # the goal; measured 0.43 (DreamBooth star) and 0.18 (outlined LoRA) over 24 clips
STAR_THRESHOLD = 0.3  # the star DreamBooth + module: measured 0.43 over 24 clips, the base asked for a star 0.00
OUTLINE_THRESHOLD = 0.1  # the outlined LoRA + module: measured 0.18 over 24 clips, the base asked for outlines 0.03
LOOK_KEPT_MARGIN = 0.1  # look with the module against frames independent: 0.43 vs 0.45 (star), 0.18 vs 0.20 (outline)
COLOUR_THRESHOLD = 0.66  # measured 1.00 over 24 clips
DIRECTIONS = ("left", "right", "up", "down")


@pytest.fixture(scope="module")
def models():
    return WorldModels.from_folder(WORLD_ASSETS)


@pytest.fixture(scope="module")
def looks(models):
    return load_look_classifier(models.looks)


@pytest.fixture(scope="module")
def two_threads():
    """Two threads: the world's UNet at 32 px runs nearly twice as fast on them as on one (CI has two cores). Under
    pytest-xdist the other worker has the other core, and this one keeps its one thread."""
    threads = torch.get_num_threads()
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipe(two_threads):
    return AnimationPipeline.from_pretrained(*default_models())


def _along_directions(row):
    """The row's motion accuracy on each of the four directions (growing and shrinking left out)."""
    return [row.per_motion[m] for m in DIRECTIONS]


def _rows(pipe, look, looks, label, motion_loras):
    """(with the motion module, frames generated independently, with the captioned motion's MotionLoRA)."""
    prompts = evaluation_prompts(PROMPTS, look=look)
    rows = pipeline_rows(pipe, steps=STEPS, label=label)
    rows["MotionLoRA"] = motion_lora_row(pipe, motion_loras, steps=STEPS)
    return [evaluate_row(name, generate, prompts, [0], looks) for name, generate in rows.items()]


@pytest.fixture(scope="module")
def base_rows(pipe, looks, models):
    """(with the motion module, frames generated independently) on the same prompts and seed."""
    return _rows(pipe, "base", looks, "base", models.motion_loras)


@pytest.fixture(scope="module")
def dreambooth_rows(models, looks, two_threads):
    pipe = AnimationPipeline.from_pretrained(models.base, models.motion_module, dreambooth=models.dreambooth)
    return _rows(pipe, "object", looks, "star DreamBooth", models.motion_loras)


@pytest.fixture(scope="module")
def lora_rows(models, looks, two_threads):
    pipe = AnimationPipeline.from_pretrained(models.base, models.motion_module)
    pipe.add_lora(models.lora)
    return _rows(pipe, "style", looks, "outlined LoRA", models.motion_loras)


def test_shipped_weights_are_fp16_and_small(models):
    from safetensors import safe_open

    size = sum(p.stat().st_size for p in WORLD_ASSETS.rglob("*") if p.is_file())
    assert size < 30 * 2**20
    files = (models.motion_module, models.base / "unet" / "diffusion_pytorch_model.safetensors", models.dreambooth)
    from animatediff.world.layout import EMBEDDED, SPARSECTRL_RGB

    for file in (*files, models.lora, models.looks, EMBEDDED / SPARSECTRL_RGB):
        with safe_open(str(file), "pt") as f:
            assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys() if not k.endswith(".alpha"))


def test_the_default_recipe_is_the_one_the_shipped_build_ran():
    """`animatediff world build` with no options must rebuild what ships: every setting the shipped build
    recorded equals today's default (settings added since record only options it did not use)."""
    import json
    from dataclasses import asdict

    from animatediff.world.build import WorldRecipe

    shipped = json.loads((WORLD_ASSETS / "build.json").read_text())["recipe"]
    current = json.loads(json.dumps(asdict(WorldRecipe()), default=str))

    def differences(recorded, now, path=""):
        if isinstance(recorded, dict):
            for key, value in recorded.items():
                if key != "progress":
                    yield from differences(value, now.get(key) if isinstance(now, dict) else None, f"{path}.{key}")
        elif recorded != now:
            yield f"{path}: shipped {recorded!r}, default {now!r}"

    assert not list(differences(shipped, current))


def test_default_generation_is_a_16_frame_32px_clip(pipe):
    frames = pipe("a red circle moving right on a blue background", seed=0, num_inference_steps=5, progress=False)
    assert frames.shape == (1, 16, 32, 32, 3) and np.isfinite(frames).all()


def test_look_classifier_reads_renderings(looks, two_threads):
    accuracy = look_accuracy(looks, LookConfig(), count=300)
    assert accuracy["shape_accuracy"] >= 0.9 and accuracy["texture_accuracy"] >= 0.9


def test_motion_module_keeps_the_object_and_its_colour(base_rows):
    with_module, independent, _ = base_rows
    assert with_module.colour_accuracy >= COLOUR_THRESHOLD
    assert with_module.consistency >= independent.consistency + 0.3


def test_motion_module_gets_the_captioned_motion(base_rows):
    with_module, independent, _ = base_rows
    assert with_module.motion_accuracy >= MOTION_THRESHOLD
    assert with_module.motion_accuracy >= independent.motion_accuracy + 0.25


@pytest.mark.parametrize("rows", ["dreambooth_rows", "lora_rows"])
def test_personalized_models_stay_coherent_with_the_same_module_untuned(rows, request):
    with_module, independent, _ = request.getfixturevalue(rows)
    # Measured on 24 clips: 0.83 (DreamBooth) and 0.70 (LoRA) with the module, 0.40 and 0.02 with independent frames.
    assert with_module.consistency >= independent.consistency + 0.3
    assert with_module.colour_accuracy >= COLOUR_THRESHOLD


@pytest.mark.parametrize("rows", ["dreambooth_rows", "lora_rows"])
def test_the_module_untuned_moves_personalized_models_the_captioned_direction(rows, request):
    """The paper's claim on motion: the module trained once on the base animates each personalized model the way
    its caption says, with no tuning and no MotionLoRA. Measured over 24 clips: 0.62 (star) and 0.79 (outline) of
    all motions, 15 and 16 of 16 directions; on this sample 4 of the 4 directions each."""
    with_module, independent, _ = request.getfixturevalue(rows)
    along = _along_directions(with_module)
    assert sum(along) / len(along) >= 0.5, with_module
    assert with_module.motion_accuracy >= independent.motion_accuracy + 0.25


def test_the_star_dreambooth_draws_stars_with_the_module(dreambooth_rows):
    with_module, _, _ = dreambooth_rows
    assert with_module.look_accuracy >= STAR_THRESHOLD


def test_the_outlined_lora_draws_outlines_with_the_module(lora_rows):
    with_module, _, _ = lora_rows
    assert with_module.look_accuracy >= OUTLINE_THRESHOLD


@pytest.mark.parametrize("rows", ["dreambooth_rows", "lora_rows"])
def test_the_module_keeps_each_personalized_look(rows, request):
    """The paper's claim on looks: animating a personalized model with the module trained on the base does not wash
    out what the personalization drew; its frames show the look as often as its images made one at a time."""
    with_module, independent, _ = request.getfixturevalue(rows)
    assert with_module.look_accuracy >= independent.look_accuracy - LOOK_KEPT_MARGIN


@pytest.mark.xfail(
    strict=True,
    reason="the shipped personalized models show their looks in a minority of frames (star 0.43, outline 0.18 over "
    "24 clips, as often as their own frames made one at a time); see animatediff/world/README.md",
)
@pytest.mark.parametrize("rows", ["dreambooth_rows", "lora_rows"])
def test_personalized_models_animate_the_captioned_motion_and_keep_their_look(rows, request):
    with_module, independent, _ = request.getfixturevalue(rows)
    assert with_module.look_accuracy >= LOOK_THRESHOLD
    assert with_module.motion_accuracy >= MOTION_THRESHOLD
    assert with_module.motion_accuracy >= independent.motion_accuracy + 0.25


def test_motion_loras_steer_every_model_to_the_captioned_direction(base_rows, dreambooth_rows, lora_rows):
    """The paper's §4.3 control: the motion module, untuned, plus the MotionLoRA of the captioned direction moves the
    base's and both personalized models' objects that way, and stays one coherent object. Measured over 24 clips
    each: 0.92, 0.92 and 0.88 of all motions (16 of 16 directions each; growing and shrinking 6, 6 and 5 of 8)."""
    directions = []
    for _, independent, steered in (base_rows, dreambooth_rows, lora_rows):
        along = _along_directions(steered)
        directions += along
        assert sum(along) / len(along) >= 0.5, steered
        assert steered.motion_accuracy >= independent.motion_accuracy + 0.25
        assert steered.consistency >= independent.consistency + 0.3
        assert steered.colour_accuracy >= COLOUR_THRESHOLD
    assert sum(directions) / len(directions) >= 0.75


def test_a_motion_name_picks_the_embedded_worlds_motion_lora(pipe, tmp_path, capsys):
    from animatediff.cli import main

    prompt = "a red circle moving right on a blue background"
    out = tmp_path / "right.npy"
    args = ["generate", "--prompt", prompt, "--steps", "5", "--seed", "0", "--quiet", "--output", str(out)]
    assert main([*args, "--motion-lora", "right"]) == 0
    name = pipe.add_lora(WORLD_ASSETS / "motion_loras" / "right.safetensors", 1.0, kind="motion")
    try:
        expected = pipe(prompt, seed=0, num_inference_steps=5, guidance_scale=WORLD_GUIDANCE_SCALE, progress=False)[0]
    finally:
        pipe.loras.remove(name)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    assert main([*args, "--motion-lora", "sideways"]) == 2
    err = capsys.readouterr().err
    assert "--motion-lora sideways: no such file, nor a MotionLoRA of the embedded world" in err and "right" in err
