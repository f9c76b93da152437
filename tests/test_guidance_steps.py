"""The guidance scale keyframed by step (`pipeline/guidance_steps.py`, Evolved's custom CFG keyframes): against
diffusers' AnimateDiffPipeline changing its guidance at that step, steps at 1 predicting the conditional text alone
as diffusers does with guidance off, with ControlNets, SparseCtrl and regions, through the CLI and a run entry, and
bad input."""

import numpy as np
import pytest
import torch

import animatediff.pipeline.animation as animation
from animatediff.errors import InputError
from animatediff.pipeline.regions import Region
from tests.diffusers_reference import diffusers_pipeline

ARGS = dict(prompt="a red circle moving left", negative_prompt="blurry", num_frames=6, height=16, width=16,
            num_inference_steps=4, guidance_scale=7.5)  # fmt: skip


def videos_per_pass(pipe, **kwargs) -> tuple[np.ndarray, list[int]]:  # noqa: ANN001
    """The frames, and the videos in each UNet pass."""
    videos: list[int] = []
    hook = pipe.unet.register_forward_pre_hook(lambda _, inputs: videos.append(inputs[0].shape[0]))
    try:
        return pipe(**kwargs), videos
    finally:
        hook.remove()


def test_frames_equal_diffusers_with_its_guidance_scale_changed_at_that_step(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    latents = torch.randn(1, 4, 6, 8, 8, generator=torch.Generator().manual_seed(4))
    got = pipe(**ARGS, latents=latents, progress=False, guidance_scale_steps={0.5: 3.0})
    # diffusers guides with the call's scale g throughout; its UNet's conditional half is moved to u + (s/g)(c − u)
    # so that the guided u + g(c' − u) is u + s(c − u), s switched from the third step on.
    reference, scale = diffusers_pipeline(pipe), {"s": 7.5}

    def rescaled(_module, _args, out):  # noqa: ANN001, ANN202
        u, c = out.sample.chunk(2)
        out.sample = torch.cat([u, u + scale["s"] / 7.5 * (c - u)])
        return out

    def switch(_pipe, i, _t, kwargs):  # noqa: ANN001, ANN202
        scale["s"] = 3.0 if i == 1 else scale["s"]
        return kwargs

    reference.unet.register_forward_hook(rescaled)
    expected = reference(**ARGS, latents=latents, output_type="np", callback_on_step_end=switch).frames
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    constant = pipe(**ARGS, latents=latents, progress=False)
    assert np.abs(got - constant).max() > 1e-3


def test_steps_at_one_predict_the_conditional_text_alone_as_diffusers_with_guidance_turned_off(
    make_pipeline, one_thread
):
    pipe = make_pipeline("v2")
    latents = torch.randn(1, 4, 6, 8, 8, generator=torch.Generator().manual_seed(5))
    got, videos = videos_per_pass(pipe, **ARGS, latents=latents, progress=False, guidance_scale_steps={0.5: 1.0})
    assert videos == [2, 2, 1, 1]  # the last two steps: one pass of the conditional text
    reference = diffusers_pipeline(pipe)

    def guidance_off(pipe_, i, _t, kwargs):  # noqa: ANN001, ANN202 - from the third step: cond alone, as at 1
        if i == 1:
            pipe_._guidance_scale = 1.0
            kwargs["prompt_embeds"] = kwargs["prompt_embeds"].chunk(2)[1]
        return kwargs

    expected = reference(**ARGS, latents=latents, output_type="np", callback_on_step_end=guidance_off,
                         callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"]).frames  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    # An unguided call guided from the middle on: the negative text encoded, the first steps unguided.
    late = dict(ARGS, guidance_scale=1.0)
    _, videos = videos_per_pass(pipe, **late, latents=latents, progress=False, guidance_scale_steps={0.5: 7.5})
    assert videos == [1, 1, 2, 2]


def test_controls_at_one_throughout_take_their_conditional_half_as_an_unguided_call(make_pipeline, one_thread):
    from animatediff.pipeline.controlnet import ControlNet
    from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet
    from animatediff.pipeline.sparse_ctrl import SparseCtrl
    from tests.controlnet_helpers import tiny_controlnet
    from tests.sparse_ctrl_helpers import tiny_sparse_ctrl

    pipe = make_pipeline("v2")
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    controls = dict(controlnets=[ControlNet(tiny_controlnet(pipe.unet.unet), images, scale=0.8)],
                    sparse_ctrls=[SparseCtrl(tiny_sparse_ctrl(pipe.unet.unet, "rgb"), {0: images[0]})])  # fmt: skip
    args = dict(ARGS, seed=2, progress=False, **controls)
    unguided = pipe(**dict(args, guidance_scale=1.0))
    at_one = pipe(**args, guidance_scale_steps={0.0: 1.0})  # guidance on for the call, every step at 1
    np.testing.assert_allclose(at_one, unguided, rtol=0, atol=1e-5)
    half = pipe(**args, guidance_scale_steps={0.5: 1.0})
    assert np.abs(half - unguided).max() > 1e-3 and np.abs(half - pipe(**args)).max() > 1e-3
    # Keyframe ControlNets are guided on every step: a step at 1 is refused, one above 1 is not.
    keyframed = KeyframeControlNet(controls["controlnets"][0].model, {0: images[0]})
    with pytest.raises(InputError, match="guidance scale 1 or less for some steps"):
        pipe(**dict(ARGS, progress=False), controlnets=[keyframed], guidance_scale_steps={0.5: 1.0})
    pipe(**dict(ARGS, progress=False, num_inference_steps=2), controlnets=[keyframed], guidance_scale_steps={0.5: 3})


def test_regions_share_the_unconditional_prediction_on_guided_steps_only(make_pipeline, monkeypatch, one_thread):
    pipe = make_pipeline("v2")
    left = np.zeros((16, 16))
    left[:, :8] = 1
    args = dict(ARGS, seed=3, progress=False, regions=[Region("a blue square moving up", left)])
    for keyframes in ({0.5: 3.0}, {0.5: 1.0}):
        shared, videos = videos_per_pass(pipe, **args, guidance_scale_steps=keyframes)
        assert videos[:3] == [1, 1, 1]  # ε_u once, then each text's ε alone
        assert videos[6:] == ([1, 1, 1, 1, 1, 1] if keyframes[0.5] > 1 else [1, 1, 1, 1])
        monkeypatch.setattr(animation, "shares_unconditional", lambda *_: False)
        separate = pipe(**args, guidance_scale_steps=keyframes)
        monkeypatch.undo()
        np.testing.assert_allclose(shared, separate, rtol=0, atol=1e-5)


def test_the_cli_and_a_run_entry_draw_what_the_library_draws(tmp_path, base_folder, one_thread):
    import yaml

    from animatediff.formats import save_motion_modules
    from animatediff.model_cache import ModelCache
    from animatediff.pipeline import AnimationPipeline
    from animatediff.prompt_config import run_prompt_config
    from tests.cli_helpers import assert_run_drew, generate
    from tests.tiny import tiny_motion

    motion = save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")
    extra = ["--guidance-scale", "6", "--guidance-scale-steps", "0.25:3", "0.75:1"]
    assert generate(base_folder, motion, tmp_path / "o.npy", *extra) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion)
    call = dict(seed=3, num_frames=4, num_inference_steps=4, progress=False, guidance_scale=6)
    expected = pipe("a fox", "", **call, guidance_scale_steps={0.25: 3, 0.75: 1})
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected[0])
    assert np.abs(pipe("a fox", "", **call) - expected).max() > 0
    entry = {"motion_module": str(motion), "prompt": ["a fox"], "seed": 3, "steps": 4, "L": 4, "guidance_scale": 6,
             "guidance_scale_steps": {"0.25": 3, "0.75": 1}}  # fmt: skip
    (tmp_path / "entry.yaml").write_text(yaml.safe_dump([entry]))
    run_prompt_config(tmp_path / "entry.yaml", base_folder, tmp_path / "runs", ModelCache(), progress=False)
    assert_run_drew(tmp_path / "runs", expected[0], tmp_path)


@pytest.mark.parametrize(
    "keyframes, message",
    [
        ({0.5: -1}, "guidance scale from step 0.5: -1 must be a number ≥ 0"),
        ({0.5: float("nan")}, "must be a number ≥ 0"),
        ({1.5: 3}, "guidance scale steps: 1.5 is not a fraction of the steps from 0 to 1"),
        ({0.5: "high"}, "must be a number ≥ 0"),
        ([0.5, 3], "guidance scale steps: expected {fraction of the steps: scale}"),
    ],
)
def test_bad_keyframes_are_one_line(make_pipeline, keyframes, message):
    with pytest.raises(InputError, match=message):
        make_pipeline("v2")("a cat", num_frames=4, height=16, width=16, num_inference_steps=1, progress=False,
                            guidance_scale_steps=keyframes)  # fmt: skip


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--guidance-scale-steps", "0.5:-2"], "--guidance-scale-steps from step 0.5: -2.0 must be a number ≥ 0"),
        (["--guidance-scale-steps", "2:3"], "is not a fraction of the steps"),
        (["--guidance-scale-steps", "half:3"], "expected FRACTION:SCALE"),
    ],
)
def test_cli_bad_input_is_one_line_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    from tests.cli_helpers import generate_error

    assert message in generate_error(tmp_path, capsys, monkeypatch, *extra)
