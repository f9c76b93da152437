"""A1111's prompt editing read as A1111 reads it: the schedules of its own examples, its step counting, the steps a
sampling step reads, and the runs of steps a call encodes once."""

import pytest
import torch

from animatediff.pipeline.edited_text import edit_runs
from animatediff.prompt_editing import edit_schedule, has_edits, prompt_at_step, switch_step
from animatediff.sampling.switched import switched_at_steps


def alternating(first: str, second: str, steps: int = 10) -> list[tuple[int, str]]:
    return [(t, first if t % 2 else second) for t in range(1, steps + 1)]


SCHEDULES = [  # A1111's examples (modules/prompt_parser.py) at 10 steps, then edge cases
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", alternating("a", "(b:1.1)")),
    ("[fe|]male", alternating("female", "male")),
    ("[fe|||]male", [(t, "female" if t % 4 == 1 else "male") for t in range(1, 11)]),
    ("a [b::0.3] c", [(3, "a b c"), (10, "a  c")]),
    ("[:b:4]", [(4, ""), (10, "b")]),
    ("a [b:c:0] d", [(10, "a c d")]),  # switched before the first step
    ("a [b:c:25] d", [(10, "a b d")]),  # at most the steps
    ("a [b:c:1.0] d", [(10, "a b d")]),  # a fraction: all of them
    ("a [b:c:-1] d", [(10, "a c d")]),
    ("a [b:c:1e1] d", [(10, "a b d")]),  # no decimal point: a step count
    ("a [b:c: 4 ] d", [(4, "a b d"), (10, "a c d")]),
    ("([red:blue:5]:1.2) car", [(5, "(red:1.2) car"), (10, "(blue:1.2) car")]),
    ("[x [y:z:2]:5]", [(2, ""), (5, ""), (10, "x z")]),  # added after 5, its own edit already past
    ("[[y:z:2] x::5]", [(2, "y x"), (5, "z x"), (10, "")]),
    ("a | b [c:d:3]", [(10, "a | b [c:d:3]")]),  # a bar outside [..|..]: not read at all
    ("a [b:c:3] \\", [(10, "a [b:c:3] \\")]),  # a lone trailing backslash: not read at all
    ("\\[b:c:3\\] [d:e:3]", [(3, "\\[b:c:3\\] d"), (10, "\\[b:c:3\\] e")]),  # escaped brackets are text
    ("[a:b] [c:d:e]", [(10, "[a:b] [c:d:e]")]),  # brackets that form no edit are text
]


@pytest.mark.parametrize(("prompt", "schedule"), SCHEDULES)
def test_schedules_are_a1111s(prompt, schedule):
    assert edit_schedule(prompt, 10) == schedule


def test_a_step_with_a_decimal_point_is_a_fraction_and_one_without_a_step():
    assert switch_step("0.5", 20) == 10
    assert switch_step("5.", 20) == 20  # 100 steps' worth, at most 20
    assert switch_step("5", 20) == 5
    assert switch_step(".25", 20) == 5
    assert switch_step("0.33", 10) == 3  # rounded down


def test_a_sampling_step_reads_the_first_entry_not_ending_before_it():
    # A1111 counts sampling steps from 0 and schedule steps from 1: step 0 reads step 1's text, and `[a:b:3]`
    # draws steps 0 to 3 with a
    assert [prompt_at_step("[a:b:3]", s, 6) for s in range(6)] == ["a", "a", "a", "a", "b", "b"]
    assert [prompt_at_step("[a|b]", s, 5) for s in range(5)] == ["a", "a", "b", "a", "b"]
    assert [prompt_at_step("[a:b:0.5]", s, 4) for s in range(4)] == ["a", "a", "a", "b"]


def test_huge_steps_and_deep_brackets_are_read_without_a_traceback():
    assert edit_schedule("[a:b:1e400]", 4) == [(4, "a")]  # past the last step
    assert edit_schedule("[a:b:-1e400]", 4) == [(4, "b")]
    deep = "(" * 2000 + "x"
    assert edit_schedule(deep, 4) == [(4, deep)] and not has_edits(deep)


def test_has_edits():
    assert has_edits("a [red:blue:0.5] car") and has_edits("[cat|dog]") and has_edits("x [y::3]")
    for text in ("a (red:1.2) [car]", "\\[a:b:3\\]", "a | [b:c:3]", "[a:b]", ""):
        assert not has_edits(text), text


def test_runs_group_the_steps_whose_texts_all_read_the_same():
    texts = ("a [red:blue:2] car", {0: "x [y|z]", 4: "w"}, None, ["[p:q:3]"])
    runs = edit_runs(True, 5, texts)
    assert [first for first, _ in runs] == [0, 2, 3, 4]
    assert runs[0][1] == ("a red car", {0: "x y", 4: "w"}, None, ["p"])
    assert runs[1][1] == ("a red car", {0: "x z", 4: "w"}, None, ["p"])
    assert runs[2][1] == ("a blue car", {0: "x y", 4: "w"}, None, ["p"])
    assert runs[3][1] == ("a blue car", {0: "x z", 4: "w"}, None, ["q"])
    alternating = edit_runs(True, 5, ("[a|b]",))
    assert alternating[0][1] is alternating[2][1]  # the same texts again: the same tuple, read and encoded once
    assert edit_runs(False, 5, texts) == [(0, texts)]
    assert edit_runs(True, 5, ("plain", None, None, None)) == [(0, ("plain", None, None, None))]


def test_a_switched_denoiser_is_chosen_by_the_steps_noise_level():
    def constant(value: float):  # noqa: ANN202
        return lambda x, t: torch.full_like(x, value)

    timesteps = torch.tensor([900, 700, 700, 500, 500, 300])  # a second-order scheduler repeats its timesteps
    denoise = switched_at_steps([(0, constant(0)), (2, constant(1)), (3, constant(2))], timesteps)
    x = torch.zeros(1)
    chosen = [float(denoise(x, t)) for t in timesteps]
    assert chosen == [0, 0, 0, 1, 1, 2]  # distinct steps 900, 700 | 500 | 300
    assert [float(denoise(x, torch.tensor(t))) for t in (950, 800, 600, 400, 100)] == [0, 0, 0, 1, 2]  # between
    one = constant(5)
    assert switched_at_steps([(0, one)], timesteps) is one
