"""Prompt travel: keyframe prompts, their embeddings interpolated per frame (`pipeline.prompt_travel`)."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline

from animatediff.errors import InputError
from animatediff.pipeline import animation as pipeline_module
from animatediff.pipeline.prompt_travel import PromptTravel, interpolate, keyframes
from animatediff.pipeline.text import encode_frame_text, prompt_encoder
from animatediff.text_encoding import encode_prompts
from tests.diffusers_reference import diffusers_pipeline

A, B, C = "a red circle moving left", "a blue square moving up", "a green triangle"
CPU = torch.device("cpu")


def frame_text(pipe, prompts, negatives=None, mode="linear", num_frames=12, guidance=True):  # noqa: ANN001, ANN201
    travel = PromptTravel(prompts, negatives, mode, num_frames)
    encode = prompt_encoder(pipe.tokenizer, pipe.text_encoder, None)
    return encode_frame_text(encode, travel, num_frames, guidance, CPU, torch.float32)


def own(pipe, prompt):  # noqa: ANN001, ANN201
    """A prompt's own embedding, encoded alone as the plain pipeline encodes it."""
    with torch.no_grad():
        return encode_prompts(pipe.tokenizer, pipe.text_encoder, [prompt])[0]


def test_keyframes_are_each_prompts_own_and_hold_before_the_first_and_after_the_last(make_pipeline, one_thread):
    pipe = make_pipeline()
    text = frame_text(pipe, {2: A, 6: B, 9: C}, {0: "blurry", 5: "dark"})
    assert text.cond.shape == text.uncond.shape == (1, 12, 77, 32)
    for frame, prompt in {2: A, 6: B, 9: C}.items():
        assert torch.equal(text.cond[0, frame], own(pipe, prompt))
    assert all(torch.equal(text.cond[0, j], own(pipe, A)) for j in (0, 1))  # before the first keyframe
    assert all(torch.equal(text.cond[0, j], own(pipe, C)) for j in (10, 11))  # after the last
    assert torch.equal(text.uncond[0, 0], own(pipe, "blurry")) and torch.equal(text.uncond[0, 5], own(pipe, "dark"))
    assert all(torch.equal(text.uncond[0, j], own(pipe, "dark")) for j in range(6, 12))
    assert frame_text(pipe, {0: A, 4: B}, guidance=False).uncond is None


def test_linear_and_none_between_keyframes(make_pipeline, one_thread):
    pipe = make_pipeline()
    a, b = own(pipe, A), own(pipe, B)
    linear = frame_text(pipe, {2: A, 6: B}, num_frames=8).cond[0]
    for j in range(2, 7):
        t = (j - 2) / 4
        torch.testing.assert_close(linear[j], (1 - t) * a + t * b, rtol=0, atol=1e-6)
    torch.testing.assert_close(linear[4], (a + b) / 2, rtol=0, atol=1e-6)  # half-way: the mean
    assert (linear[3] - a).abs().max() > 1e-2  # really between, not a copy
    none = frame_text(pipe, {2: A, 6: B}, mode="none", num_frames=8).cond[0]
    assert all(torch.equal(none[j], a) for j in range(0, 6)) and all(torch.equal(none[j], b) for j in (6, 7))


def _angle(u: torch.Tensor, v: torch.Tensor) -> float:
    u, v = u.double().flatten(), v.double().flatten()
    return torch.arccos((u @ v / (u.norm() * v.norm())).clamp(-1, 1)).item()


def test_slerp_moves_along_the_great_circle_between_the_keyframes(make_pipeline, one_thread):
    pipe = make_pipeline()
    a, b = own(pipe, A), own(pipe, B)
    omega = _angle(a, b)
    assert omega > 0.1  # far from parallel: really spherical
    slerp = frame_text(pipe, {0: A, 4: B}, mode="slerp", num_frames=5).cond[0]
    assert torch.equal(slerp[0], a) and torch.equal(slerp[4], b)
    for j in (1, 2, 3):
        t = j / 4
        # The angle from each end grows linearly along the arc, and the point lies on it: sin-weighted ends.
        assert _angle(a, slerp[j]) == pytest.approx(t * omega, abs=1e-4)
        assert _angle(slerp[j], b) == pytest.approx((1 - t) * omega, abs=1e-4)
        expected = (np.sin((1 - t) * omega) * a.double() + np.sin(t * omega) * b.double()) / np.sin(omega)
        torch.testing.assert_close(slerp[j].double(), expected, rtol=0, atol=1e-5)
    # Nearly parallel ends fall back to linear interpolation.
    e = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(interpolate({0: e, 2: 3 * e}, 3, "slerp")[1], 2 * e, rtol=0, atol=1e-6)


def _reference(pipe, free_noise_frames: int | None = None) -> AnimateDiffPipeline:  # noqa: ANN001
    ref = diffusers_pipeline(pipe, motion_adapter=True)
    if free_noise_frames is not None:
        ref.enable_free_noise(context_length=free_noise_frames, context_stride=4)
    return ref


def test_per_frame_embeddings_equal_diffusers_free_noise_prompt_dict(make_pipeline, one_thread):
    """diffusers' `_encode_prompt_free_noise` with its default `prompt_interpolation_callback` (linear)."""
    pipe = make_pipeline()
    ref = _reference(pipe, free_noise_frames=12)  # its default interpolation callback: `_lerp`
    prompts, negatives = {0: A, 5: B, 9: C}, {0: "blurry", 7: "dark"}
    cond, uncond = ref._encode_prompt_free_noise(prompts, 12, CPU, 1, True, negatives)
    ours = frame_text(pipe, prompts, negatives)
    assert (ours.cond[0] - cond[12:]).abs().max().item() <= 1e-6  # diffusers returns [uncond; cond]
    assert (ours.uncond[0] - uncond).abs().max().item() <= 1e-6


def test_frames_equal_diffusers_free_noise_pipeline_with_a_prompt_dict(make_pipeline, one_thread):
    """With FreeNoise's window as long as the clip, FreeNoise changes nothing but the text: per-frame embeddings."""
    pipe = make_pipeline("v2")
    ref = _reference(pipe, free_noise_frames=6)
    args = dict(
        prompt={0: A, 3: B, 5: C},
        negative_prompt="blurry",
        num_frames=6,
        height=16,
        width=16,
        num_inference_steps=3,
        guidance_scale=7.5,
    )
    expected = ref(**args, generator=torch.Generator("cpu").manual_seed(7), output_type="np").frames
    got = pipe(**args, seed=7, progress=False)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    plain = pipe(A, "blurry", **{k: v for k, v in args.items() if "prompt" not in k}, seed=7, progress=False)
    assert np.abs(got - plain).max() > 1e-2  # the travel changed the video


def test_frames_equal_diffusers_with_free_noise_windows_and_keyframed_negatives(make_pipeline, one_thread):
    """Prompt travel under our FreeNoise (`free_noise=`) against diffusers' FreeNoise: several motion windows."""
    from animatediff.pipeline.free_noise import FreeNoise

    pipe = make_pipeline("v2")
    ref = _reference(pipe)
    ref.enable_free_noise(8, 4, "pyramid", "shuffle_context")
    args = dict(
        prompt={0: A, 7: B, 15: C},
        negative_prompt={0: "blurry", 10: "dark"},
        num_frames=16,
        height=16,
        width=16,
        num_inference_steps=3,
        guidance_scale=7.5,
    )
    expected = ref(**args, generator=torch.Generator("cpu").manual_seed(7), output_type="np").frames
    got = pipe(**args, seed=7, progress=False, free_noise=FreeNoise(8, 4, "pyramid", "shuffle_context"))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_a_single_keyframe_is_the_plain_prompt_exactly(make_pipeline, one_thread):
    pipe = make_pipeline()
    kwargs = dict(num_frames=4, num_inference_steps=2, seed=3, progress=False)
    plain = pipe(A, "blurry", **kwargs)
    np.testing.assert_array_equal(pipe({0: A}, "blurry", **kwargs), plain)
    np.testing.assert_array_equal(pipe({2: A}, {1: "blurry"}, prompt_interpolation="slerp", **kwargs), plain)
    text = frame_text(pipe, {3: A}, "blurry")
    assert text.cond.shape == (1, 77, 32)  # per video, as the plain prompt's


def test_context_windows_take_their_frames_embeddings(make_pipeline, monkeypatch, one_thread):
    pipe = make_pipeline()
    seen = []
    make_predictor = pipeline_module.unet_predictor

    def recording(unet, conditions=()):  # noqa: ANN001, ANN202
        predict = make_predictor(unet, conditions)
        return lambda x, t, text, frames: seen.append((text.clone(), frames.tolist())) or predict(x, t, text, frames)

    monkeypatch.setattr(pipeline_module, "unet_predictor", recording)
    prompts = {0: A, 9: B}
    pipe(prompts, "blurry", num_frames=10, num_inference_steps=1, context_length=6, context_overlap=2, progress=False)
    full = frame_text(pipe, prompts, "blurry", num_frames=10, guidance=pipe.guidance_scale > 1)
    both = torch.cat([full.uncond, full.cond])  # the guided batch: [uncond, cond]
    assert [frames for _, frames in seen] == [[0, 1, 2, 3, 4, 5], [4, 5, 6, 7, 8, 9]]
    for text, frames in seen:
        assert torch.equal(text, both[:, frames])


BAD = [
    ({}, None, "linear", "prompt is empty"),
    ({-1: A}, None, "linear", "frame -1 is not a non-negative integer"),
    ({"two": A}, None, "linear", "frame 'two' is not a non-negative integer"),
    ({1.5: A}, None, "linear", "frame 1.5 is not a non-negative integer"),
    ({0: A, 4: B}, None, "linear", "prompt keyframe 4 is beyond the clip's last frame, 3"),
    ({0: A}, {9: "dark"}, "linear", "negative prompt keyframe 9 is beyond the clip's last frame, 3"),
    ({0: A, "0": B}, None, "linear", "frame 0 is given twice"),
    ({0: None}, None, "linear", "the prompt of frame 0 must be a string"),
    ({0: A}, None, "cubic", "prompt interpolation 'cubic': choose one of linear, slerp, none"),
    ("a cat", None, "cubic", "prompt interpolation 'cubic'"),
    ([A, B], {0: "dark"}, "linear", "keyframed negative prompts need a single prompt"),
]


def test_bad_keyframes_are_one_line_input_errors_before_sampling(make_pipeline, monkeypatch):
    pipe = make_pipeline()
    monkeypatch.setattr(pipeline_module, "encode_text", lambda *a, **k: pytest.fail("reached the text encoder"))
    for prompt, negative, mode, message in BAD:
        with pytest.raises(InputError, match=message) as err:
            pipe(prompt, negative, prompt_interpolation=mode, num_frames=4, num_inference_steps=1, progress=False)
        assert "\n" not in str(err.value)


def test_keyframes_read_json_style_string_frames_in_order():
    assert keyframes({"16": B, "0": A, 8: C}) == {0: A, 8: C, 16: B}
    assert list(keyframes({"16": B, "0": A})) == [0, 16]


@pytest.mark.parametrize(
    ("text", "frames"),
    [
        ("1girl, smiling\n0: closed mouth\n8: open mouth\nsmile, blush\nlooking at viewer",
         {0: "1girl, smiling, closed mouth, smile, blush, looking at viewer",
          8: "1girl, smiling, open mouth, smile, blush, looking at viewer"}),
        ("a red circle\non a blue background\n0: moving left\n4: moving right",
         {0: "a red circle, on a blue background, moving left, ",
          4: "a red circle, on a blue background, moving right, "}),
        ("0: a\n2:b\n3: c", {0: ", a, 2:b, 3: c"}),  # a line that is not `N: text` starts the tail
        ("a red circle moving left", None),
        ("8k, a red circle: moving left", None),
    ],
)  # fmt: skip
def test_the_a1111_extensions_prompt_travel_lines(text, frames):
    from animatediff.pipeline.prompt_travel import text_keyframes

    assert text_keyframes(text) == frames


def test_a_prompt_in_the_a1111_form_draws_as_its_keyframes(make_pipeline, one_thread, tmp_path, capsys):
    from animatediff.cli import main

    pipe = make_pipeline()
    args = dict(num_frames=6, height=16, width=16, num_inference_steps=2, seed=1, progress=False)
    text = "a red circle\n0: moving left\n5: moving right"
    keyframed = {0: "a red circle, moving left, ", 5: "a red circle, moving right, "}
    np.testing.assert_array_equal(pipe(text, **args), pipe(keyframed, **args))
    out = ["generate", "--prompt", "a red circle\n0: left\n20: right", "--output", str(tmp_path / "a.gif")]
    assert main([*out, "--frames", "8", "--quiet"]) == 2  # a keyframe past the clip, before loading
    assert "20" in capsys.readouterr().err and not (tmp_path / "a.gif").exists()
