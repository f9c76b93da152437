"""Motion scale keyframed by step (`motion_scale_steps`, --motion-scale-steps): diffusers' AnimateDiffPipeline with
its motion modules scaled, the scale switched by its `callback_on_step_end`, draws the same frames; keyframes never
reached or at step 0 are the plain scales; which step a fraction starts at; text edits and scales change together."""

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.pipeline.motion_scale import check_motion_scale_steps, motion_scale_runs
from animatediff.sampling.switched import merged_runs
from tests.diffusers_reference import diffusers_pipeline
from tests.test_motion_scale import Scaled

ARGS = dict(num_frames=4, height=16, width=16, num_inference_steps=5, guidance_scale=7.5)


def test_a_keyframe_starts_at_the_first_step_at_or_past_its_fraction():
    assert motion_scale_runs(None, {}, 10) == [(0, None)]
    assert motion_scale_runs(1.0, {0.5: 0.0}, 10) == [(0, 1.0), (5, 0.0)]
    assert motion_scale_runs(1.0, {0.45: 0.0}, 10) == [(0, 1.0), (5, 0.0)]  # step 4.5: the fifth
    assert motion_scale_runs(1.0, {0.3: 0.5, 0.7: 0.0}, 10) == [(0, 1.0), (3, 0.5), (7, 0.0)]
    assert motion_scale_runs(1.0, {0.0: 0.2}, 10) == [(0, 0.2)]  # from the first step: replaces the scale
    assert motion_scale_runs(1.0, {0.51: 0.2, 0.55: 0.3}, 10) == [(0, 1.0), (6, 0.3)]  # the same step: the later
    assert motion_scale_runs(1.0, {1.0: 0.0}, 10) == [(0, 1.0)]  # past the last step
    assert merged_runs([(0, "a"), (3, "b")], [(0, 1.0), (2, 0.0)]) == [
        (0, ("a", 1.0)),
        (2, ("a", 0.0)),
        (3, ("b", 0.0)),
    ]


@pytest.mark.parametrize(
    ("keyframes", "message"),
    [
        ({1.5: 0.0}, "1.5 is not a fraction of the steps from 0 to 1"),
        ({"half": 0.0}, "'half' is not a fraction"),
        ({0.5: -1}, "motion scale -1 must be a number ≥ 0"),
        ([0.5], "expected {fraction of the steps: scale}"),
    ],
)
def test_bad_keyframes_are_one_line(keyframes, message):
    with pytest.raises(InputError, match=message):
        check_motion_scale_steps(keyframes)


def test_keyframed_scales_match_diffusers_switching_its_scaled_modules(make_pipeline, one_thread):
    ours = make_pipeline("v2")
    reference = diffusers_pipeline(ours)
    scaled = []
    for block in [*reference.unet.down_blocks, reference.unet.mid_block, *reference.unet.up_blocks]:
        for i, module in enumerate(getattr(block, "motion_modules", [])):
            block.motion_modules[i] = Scaled(module, 1.0)
            scaled.append(block.motion_modules[i])
    assert scaled

    def switch(pipe, i, t, kwargs):  # noqa: ANN001, ANN202
        for module in scaled:  # keyframes {0.4: 0.2, 0.8: 0}: steps 2 and 3 at 0.2, step 4 at 0
            module.scale = 0.2 if i + 1 in (2, 3) else 0.0 if i + 1 == 4 else module.scale
        return {}

    generator = torch.Generator("cpu").manual_seed(3)
    expected = reference(
        prompt="a red circle", negative_prompt="blurry", **ARGS, generator=generator, output_type="np",
        callback_on_step_end=switch,
    ).frames  # fmt: skip
    got = ours("a red circle", "blurry", **ARGS, seed=3, progress=False, motion_scale_steps={0.4: 0.2, 0.8: 0.0})
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    plain = ours("a red circle", "blurry", **ARGS, seed=3, progress=False)
    assert np.abs(got - plain).max() > 1e-3


def test_keyframes_at_the_ends_are_plain_scales_and_edits_change_with_them(make_pipeline, one_thread):
    pipe = make_pipeline("v3")
    run = dict(ARGS, seed=1, progress=False)
    half = pipe("a red circle", **run, motion_scale=0.5)
    np.testing.assert_array_equal(pipe("a red circle", **run, motion_scale_steps={0.0: 0.5}), half)
    np.testing.assert_array_equal(pipe("a red circle", **run, motion_scale=0.5, motion_scale_steps={1.0: 0.0}), half)
    both = pipe("a [red:blue:2] circle", **run, prompt_editing=True, motion_scale_steps={0.6: 0.0})  # steps 3 and 3
    only_text = pipe("a [red:blue:2] circle", **run, prompt_editing=True)
    assert np.abs(both - only_text).max() > 1e-3
    with pytest.raises(InputError, match="motion scale steps: 2 is not a fraction"):
        pipe("a red circle", **run, motion_scale_steps={2: 0.0})


def test_generate_and_a_run_entry_take_keyframes(make_pipeline, tmp_path, pipeline_calls, one_thread):
    from animatediff.cli import main
    from animatediff.entry_pipeline_args import entry_pipeline_args
    from animatediff.prompt_entries import parse_entry

    args = ["generate", "--prompt", "a red circle moving left on a blue background", "--frames", "2", "--steps", "2",
            "--output", str(tmp_path / "a.gif"), "--quiet"]  # fmt: skip
    assert main([*args, "--motion-scale-steps", "0.5:0", "--motion-scale-steps", "0.8:0.3"]) == 0  # repeatable
    assert [c["motion_scale_steps"] for c in pipeline_calls] == [{0.5: 0.0, 0.8: 0.3}]
    assert main([*args, "--motion-scale-steps", "half:0"]) == 2

    raw = {"prompt": ["a red circle"], "motion_module": "m.ckpt", "motion_scale_steps": {"0.5": 0, 0.2: {"up": 0.5}}}
    entry = parse_entry(raw, "run.yaml")
    assert entry.motion_scale_steps == {0.2: {"up": 0.5}, 0.5: 0}
    assert entry_pipeline_args(entry, make_pipeline(), 16, None, None, [], str, "run.yaml")["motion_scale_steps"]
    for bad, message in (({"x": 0}, "its keys must be fractions"), ({0.5: -2}, "motion scale -2 must be")):
        with pytest.raises(InputError, match=f"run.yaml: .*{message}"):
            parse_entry({**raw, "motion_scale_steps": bad}, "run.yaml")
