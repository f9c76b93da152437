"""Prompt editing in the pipeline: diffusers' AnimateDiffPipeline and AnimateDiffSDXLPipeline, handed each step's
text by their `callback_on_step_end` (the text A1111 reads at that step, written out here), draw the same frames;
edits that never switch are the plain prompt; the steps counted are the run's; it composes with prompt travel,
context windows, FreeInit's coarse-to-fine runs and video-to-video; off, a prompt with edits is warned about."""

import logging

import numpy as np
import pytest
import torch

from animatediff.sampling import FreeInit
from tests.diffusers_reference import diffusers_pipeline
from tests.sdxl_tiny import tiny_sdxl_pipeline
from tests.test_sdxl_pipeline import reference as sdxl_reference
from tests.test_video_to_video import _video

PROMPT, NEGATIVE = "a [red:blue:2] circle, [left|right]", "[blurry|dark]"
STEP_TEXTS = [  # A1111 at 5 steps: sampling step s reads schedule step max(s, 1)
    ("a red circle, left", "blurry"),
    ("a red circle, left", "blurry"),
    ("a red circle, right", "dark"),
    ("a blue circle, left", "blurry"),
    ("a blue circle, right", "dark"),
]
ARGS = dict(num_frames=4, num_inference_steps=5, guidance_scale=7.5)


def test_editing_matches_diffusers_given_each_steps_text(make_pipeline, one_thread):
    ours = make_pipeline("v2")
    reference = diffusers_pipeline(ours)
    cpu = torch.device("cpu")
    with torch.no_grad():
        embeds = [
            torch.cat([reference.encode_prompt(n, cpu, 1, False)[0], reference.encode_prompt(p, cpu, 1, False)[0]])
            for p, n in STEP_TEXTS
        ]

    def next_steps_text(pipe, i, t, kwargs):  # noqa: ANN001, ANN202
        return {"prompt_embeds": embeds[min(i + 1, 4)].repeat_interleave(ARGS["num_frames"], dim=0)}

    generator = torch.Generator("cpu").manual_seed(3)
    expected = reference(
        prompt=STEP_TEXTS[0][0], negative_prompt=STEP_TEXTS[0][1], height=16, width=16, **ARGS, generator=generator,
        output_type="np", callback_on_step_end=next_steps_text, callback_on_step_end_tensor_inputs=["prompt_embeds"],
    ).frames  # fmt: skip
    got = ours(PROMPT, NEGATIVE, height=16, width=16, **ARGS, seed=3, progress=False, prompt_editing=True)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    first = ours(STEP_TEXTS[0][0], STEP_TEXTS[0][1], height=16, width=16, **ARGS, seed=3, progress=False)
    assert np.abs(got - first).max() > 1e-3  # the later steps' text counts


def test_sdxl_editing_switches_the_pooled_text_too(tmp_path, one_thread):
    ours = tiny_sdxl_pipeline(tmp_path)
    reference = sdxl_reference(ours)
    cpu = torch.device("cpu")
    with torch.no_grad():
        encoded = [reference.encode_prompt(p, None, cpu, 1, True, n) for p, n in STEP_TEXTS]
    texts = [torch.cat([e[1], e[0]]) for e in encoded]
    pooled = [torch.cat([e[3], e[2]]) for e in encoded]

    def next_steps_text(pipe, i, t, kwargs):  # noqa: ANN001, ANN202
        k = min(i + 1, 4)
        return {"prompt_embeds": texts[k].repeat_interleave(ARGS["num_frames"], dim=0), "add_text_embeds": pooled[k]}

    generator = torch.Generator("cpu").manual_seed(5)
    expected = reference(
        prompt=STEP_TEXTS[0][0], negative_prompt=STEP_TEXTS[0][1], height=32, width=32, **ARGS, generator=generator,
        output_type="np", callback_on_step_end=next_steps_text,
        callback_on_step_end_tensor_inputs=["prompt_embeds", "add_text_embeds"],
    ).frames  # fmt: skip
    got = ours(PROMPT, NEGATIVE, height=32, width=32, **ARGS, seed=5, progress=False, prompt_editing=True)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def pipe(tokenizer_module):
    from animatediff.models import inflate_unet
    from animatediff.pipeline import AnimationPipeline
    from tests.tiny import official_scheduler, tiny_motion, tiny_text_encoder, tiny_unet, tiny_vae

    unet = inflate_unet(tiny_unet(), tiny_motion("v3"))
    return AnimationPipeline(
        tokenizer_module, tiny_text_encoder(len(tokenizer_module)), tiny_vae(), unet, official_scheduler()
    )


@pytest.fixture(scope="module")
def tokenizer_module(tmp_path_factory):
    from tests.tiny import tiny_tokenizer

    return tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def draw(pipe, prompt, **kwargs) -> np.ndarray:  # noqa: ANN001
    args = dict(ARGS, height=16, width=16, seed=1, progress=False) | kwargs
    return pipe(prompt, "blurry", **args)


def test_edits_that_never_switch_are_the_plain_prompt(pipe, one_thread):
    red, blue = draw(pipe, "a red circle"), draw(pipe, "a blue circle")
    np.testing.assert_array_equal(draw(pipe, "a [red:blue:5] circle", prompt_editing=True), red)
    np.testing.assert_array_equal(draw(pipe, "a [red:blue:0] circle", prompt_editing=True), blue)
    np.testing.assert_array_equal(draw(pipe, "a [red|red] circle", prompt_editing=True), red)
    switched = draw(pipe, "a [red:blue:2] circle", prompt_editing=True)
    assert np.abs(switched - red).max() > 1e-3 and np.abs(switched - blue).max() > 1e-3


def test_each_distinct_text_is_encoded_once(pipe, one_thread, monkeypatch):
    import animatediff.pipeline.animation as animation

    encoded = []
    encode = animation.encode_text
    monkeypatch.setattr(animation, "encode_text", lambda *a, **k: encoded.append(a[2]) or encode(*a, **k))
    draw(pipe, "a [red|blue] circle", prompt_editing=True)  # five steps: red, red, blue, red, blue
    assert encoded == [["a red circle"], ["a blue circle"]]


def test_off_a_prompt_with_edits_is_its_words_and_a_warning(pipe, one_thread, caplog):
    with caplog.at_level(logging.WARNING, logger="animatediff"):
        literal = draw(pipe, "a [red:blue:2] circle")
    assert "'[from:to:when]' and '[a|b]' are read as they are written" in caplog.text
    with caplog.at_level(logging.WARNING, logger="animatediff"):
        caplog.clear()
        draw(pipe, "a [red:blue:2] circle", prompt_editing=True)
    assert "read as they are written" not in caplog.text
    assert np.abs(literal - draw(pipe, "a [red:blue:2] circle", prompt_editing=True)).max() > 1e-3


def test_when_counts_the_steps_the_run_goes_through(pipe, one_thread):
    # video-to-video at strength 0.6 of 5 steps runs 3: 0.4 of them is step 1
    video = dict(video=_video(4), strength=0.6, num_frames=4)
    fraction = draw(pipe, "a [red:blue:0.4] circle", prompt_editing=True, **video)
    np.testing.assert_array_equal(fraction, draw(pipe, "a [red:blue:1] circle", prompt_editing=True, **video))
    assert np.abs(fraction - draw(pipe, "a [red:blue:2] circle", prompt_editing=True, **video)).max() > 1e-3


def test_edits_compose_with_travel_windows_and_free_init(pipe, one_thread):
    travel = {0: "a [red:blue:2] circle", 5: "a green square"}
    args = dict(num_frames=6, context_length=4, context_overlap=2)
    edited = draw(pipe, travel, prompt_editing=True, **args)
    assert edited.shape == (1, 6, 16, 16, 3)
    plain = draw(pipe, {0: "a red circle", 5: "a green square"}, **args)
    assert np.abs(edited - plain).max() > 1e-3
    never = draw(pipe, {0: "a [red:blue:9] circle", 5: "a green square"}, prompt_editing=True, **args)
    np.testing.assert_array_equal(never, plain)
    free_init = FreeInit(iterations=2, fast_sampling=True)  # the first run takes fewer steps
    coarse = draw(pipe, "a [red:blue:0.5] circle", prompt_editing=True, free_init=free_init)
    assert coarse.shape == (1, 4, 16, 16, 3) and np.isfinite(coarse).all()


def test_generate_and_a_run_entry_reach_the_pipeline(make_pipeline, tmp_path, pipeline_calls, one_thread):
    from animatediff.cli import main
    from animatediff.entry_pipeline_args import entry_pipeline_args
    from animatediff.errors import InputError
    from animatediff.prompt_entries import parse_entry

    out = tmp_path / "edited.gif"
    prompt = "a red circle moving [left:right:0.5] on a blue background"
    args = ["generate", "--prompt", prompt, "--frames", "2", "--steps", "2", "--output", str(out), "--quiet"]
    assert main([*args, "--prompt-editing"]) == 0 and out.exists()
    assert main(args) == 0
    assert [c["prompt_editing"] for c in pipeline_calls] == [True, False]

    raw = {"prompt": [prompt], "motion_module": "m.ckpt", "prompt_editing": True}
    entry = parse_entry(raw, "run.yaml")
    assert entry_pipeline_args(entry, make_pipeline(), 16, None, None, [], str, "run.yaml")["prompt_editing"] is True
    with pytest.raises(InputError, match="run.yaml: prompt_editing must be true or false, got 'yes'"):
        parse_entry({**raw, "prompt_editing": "yes"}, "run.yaml")
