"""Where context windows lie: `ContextSchedule` (static, uniform, looped, closed loops) and its checks."""

import pytest

from animatediff.errors import InputError
from animatediff.sampling.context import ContextSchedule
from animatediff.sampling.context_schedules import ordered_halving

KINDS = [
    ("static", 1, False),
    ("looped", 1, True),
    ("uniform", 1, False),
    ("uniform", 1, True),
    ("uniform", 3, False),
    ("uniform", 3, True),
]


@pytest.mark.parametrize("schedule, stride, closed", KINDS)
def test_every_step_covers_every_frame_with_windows_of_the_length(schedule, stride, closed):
    for num_frames in range(1, 41):
        for length in (2, 3, 5, 8, 16):
            for overlap in sorted({0, 1, 4 % length, length - 1}):
                context = ContextSchedule(length, overlap, stride, schedule, closed_loop=closed)
                for step in range(12):
                    windows = context.windows(num_frames, step)
                    assert {f for w in windows for f in w} == set(range(num_frames))
                    assert all(len(w) == min(length, num_frames) == len(set(w)) for w in windows)
                    assert all(0 <= f < num_frames for w in windows for f in w)


def test_static_windows_are_todays():
    context = ContextSchedule(16, 4)
    assert context.windows(16) == [list(range(16))]
    assert [w[0] for w in context.windows(40)] == [0, 12, 24]
    assert [w[0] for w in context.windows(42, step=5)] == [0, 12, 24, 26]  # the last snapped to the end


def test_looped_windows_wrap_around_the_end_and_close_the_ring():
    context = ContextSchedule(8, 2, schedule="looped")
    assert context.closed_loop
    windows = context.windows(20)
    assert windows == [
        list(range(0, 8)),
        list(range(6, 14)),
        list(range(12, 20)),
        [18, 19, 0, 1, 2, 3, 4, 5],
    ]
    # Every pair of neighbouring frames, the last and the first included, is seen together by some window.
    for f in range(20):
        assert any(f in w and (f + 1) % 20 in w for w in windows)


def test_uniform_follows_ade_and_moves_from_step_to_step():
    # ComfyUI-AnimateDiff-Evolved's standard_uniform and looped_uniform (closed) give these for 20 frames, L 8, O 2,
    # context_stride 2.
    context = ContextSchedule(8, 2, 2, "uniform")
    assert context.windows(20, 0) == [
        list(range(0, 8)),
        list(range(6, 14)),
        list(range(12, 20)),
        list(range(0, 15, 2)),
        list(range(5, 20, 2)),
    ]
    assert context.windows(20, 1) == [
        list(range(10, 18)),
        list(range(12, 20)),
        list(range(0, 8)),
        list(range(2, 10)),
        list(range(5, 20, 2)),
        list(range(1, 9)),
    ]
    closed = ContextSchedule(8, 2, 2, "uniform", closed_loop=True)
    assert closed.windows(20, 0) == [
        list(range(0, 8)),
        list(range(6, 14)),
        list(range(12, 20)),
        [18, 19, 0, 1, 2, 3, 4, 5],
        list(range(0, 15, 2)),
        [14, 16, 18, 0, 2, 4, 6, 8],
    ]
    assert closed.windows(20, 1)[:2] == [list(range(10, 18)), [16, 17, 18, 19, 0, 1, 2, 3]]
    assert [ordered_halving(s) for s in range(5)] == [0, 0.5, 0.25, 0.75, 0.125]


def test_uniform_leaves_out_strides_whose_windows_would_hold_a_frame_twice():
    # ADE keeps stride 4 here, whose windows (spanning 17 frames of 11) repeat or overrun frames.
    windows = ContextSchedule(5, 2, 3, "uniform").windows(11, 2)
    assert max(w[1] - w[0] for w in windows) == 2
    assert windows[-1] == [1, 2, 3, 4, 5]  # frame 1, which ADE's pass leaves uncovered at this step


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(length=0), "context length 0 must be a whole number of frames ≥ 1"),
        (dict(length=8, overlap=8), "context overlap 8 must be from 0 to the context length − 1 (7)"),
        (dict(overlap=-1), "context overlap -1"),
        (dict(stride=0, schedule="uniform"), "context stride 0 must be a whole number ≥ 1"),
        (dict(stride=2), "only the 'uniform' schedule takes strides"),
        (dict(schedule="spiral"), "unknown context schedule 'spiral'; expected one of: static, uniform, looped"),
        (dict(fuse="gauss"), "unknown context fuse 'gauss'; expected one of: flat, pyramid, overlap-linear, relative"),
        (dict(closed_loop=True), "'static' windows never wrap"),
        (dict(length=2.5), "context length 2.5"),
    ],
)
def test_bad_options_are_one_line_input_errors(kwargs, message):
    with pytest.raises(InputError) as err:
        ContextSchedule(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)
