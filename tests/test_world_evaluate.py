import numpy as np
import pytest

from animatediff.world.evaluate import Prompt, caption_motion, evaluate_row, evaluation_prompts, memoized, table
from animatediff.world.render import render_video
from animatediff.world.scenes import SceneSpec


def test_prompts_cycle_the_motions_and_carry_the_asked_look():
    base = evaluation_prompts(12)
    assert [p.motion for p in base[:6]] == ["left", "right", "up", "down", "growing", "shrinking"]
    assert all(p.texture == "solid" and p.shape != "star" and p.colour != p.background for p in base)
    assert base[0].text == f"a {base[0].colour} {base[0].shape} moving left on a {base[0].background} background"
    style, stars = evaluation_prompts(6, look="style"), evaluation_prompts(6, look="object")
    assert all(p.texture == "outlined" and " outlined " in p.text for p in style)
    assert all(p.shape == "star" and " star " in p.text for p in stars)
    assert stars[4].text.endswith("star growing on a " + stars[4].background + " background")
    with pytest.raises(ValueError, match="unknown look"):
        evaluation_prompts(2, look="sketch")


def _rendered(prompt: Prompt, reverse: bool = False) -> np.ndarray:
    amount = {"growing": 2.0, "shrinking": 0.5}.get(prompt.motion, 0.3)
    start = {"left": (0.7, 0.5), "right": (0.3, 0.5), "up": (0.5, 0.7), "down": (0.5, 0.3)}.get(prompt.motion)
    x, y = start or (0.5, 0.5)
    size = 0.1 if prompt.motion == "growing" else 0.2 if prompt.motion == "shrinking" else 0.15
    spec = SceneSpec(prompt.shape, prompt.colour, prompt.background, prompt.texture, prompt.motion, x, y, size,
                     amount=amount)  # fmt: skip
    frames = render_video(spec, 16, 32).frames / 255.0
    return frames[::-1] if reverse else frames


class _Looks:
    """Reads every frame as the shape and texture it is told."""

    def __init__(self, shape: str, texture: str) -> None:
        self.shape, self.texture = shape, texture

    def predict(self, frames: np.ndarray) -> tuple[list[str], list[str]]:
        return [self.shape] * len(frames), [self.texture] * len(frames)


def test_rendered_ground_truth_scores_full_marks_and_reversed_clips_none():
    prompts = evaluation_prompts(6)
    calls = []

    def truth(text: str, seed: int) -> np.ndarray:
        calls.append((text, seed))
        return _rendered(next(p for p in prompts if p.text == text))

    row = evaluate_row("truth", memoized(truth), prompts, [0, 1])
    assert (row.motion_accuracy, row.colour_accuracy, row.samples) == (1.0, 1.0, 12)
    assert row.consistency > 0.6 and row.look_accuracy is None
    assert set(row.per_motion) == {"left", "right", "up", "down", "growing", "shrinking"}
    reverse = evaluate_row(
        "reversed", lambda t, s: _rendered(next(p for p in prompts if p.text == t), True), prompts, [0]
    )
    assert reverse.motion_accuracy == 0.0
    # Look accuracy: the fraction of frames read as the prompt's shape and texture.
    one = prompts[:1]
    right = evaluate_row("r", truth, one, [0], _Looks(one[0].shape, "solid"))
    wrong = evaluate_row("w", truth, one, [0], _Looks("star", "solid"))
    assert right.look_accuracy == 1.0 and wrong.look_accuracy == 0.0
    assert right.look_by_shape == {one[0].shape: 1.0} and row.look_by_shape == {}
    # Split: the right shape in the wrong texture is half right, and the look wrong.
    outlined = evaluate_row("o", truth, one, [0], _Looks(one[0].shape, "outlined"))
    assert (outlined.look_accuracy, outlined.shape_accuracy, outlined.texture_accuracy) == (0.0, 1.0, 0.0)
    assert (wrong.shape_accuracy, wrong.texture_accuracy) == (0.0, 1.0)
    assert row.shape_accuracy is None and row.texture_accuracy is None
    assert "| r | 1.00 | 1.00 | 1.00 |" in table([right]) and "| – |" in table([row])


def test_memoized_generates_each_clip_once():
    calls = []

    def generate(text: str, seed: int) -> np.ndarray:
        calls.append((text, seed))
        return np.zeros((2, 4, 4, 3))

    cached = memoized(generate)
    cached("a", 0), cached("a", 0), cached("a", 1)
    assert calls == [("a", 0), ("a", 1)]


def test_caption_motion_reads_the_motion_a_caption_names():
    for motion in ("left", "right", "up", "down", "growing", "shrinking", "still"):
        assert caption_motion(Prompt("red", "circle", motion, "blue").text) == motion
    assert caption_motion("a red striped square bouncing on a white background") == "bouncing"
