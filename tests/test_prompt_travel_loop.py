"""Prompt travel going round (`prompt_travel_loop`): after the last keyframe the text travels on towards the first,
as animatediff-cli-prompt-travel's `PromptEncoder` interpolates (`pipeline.prompt_travel.interpolate`)."""

import numpy as np
import pytest
import torch

from animatediff.pipeline.prompt_travel import held_keyframes, interpolate
from tests.diffusers_reference import diffusers_pipeline

A, B, C = "a red circle moving left", "a blue square moving up", "a green triangle"
CPU = torch.device("cpu")


def prompt_travel_rule(keys: list[int], center: int, length: int) -> tuple[int, int, float]:
    """prompt-travel's choice for one frame, written out as its `_get_current_prompt_embeds_from_text` reads: the
    keyframe at or before the frame (else the last), the next after it (else the first), the distances counted
    around the clip; (previous, next, rate)."""
    prev, nxt = keys[-1], keys[0]
    for k in keys:
        if k > center:
            nxt = k
            break
        prev = k
    gone = center - prev + (length if center < prev else 0)
    left = nxt - center + (length if nxt < center else 0)
    if prev == nxt or gone + left == 0:
        return prev, prev, 0.0
    return prev, nxt, gone / (gone + left)


def expected_frames(embeddings: dict[int, torch.Tensor], length: int) -> torch.Tensor:
    keys = sorted(embeddings)
    out = []
    for j in range(length):
        prev, nxt, rate = prompt_travel_rule(keys, j, length)
        out.append(embeddings[prev] + rate * (embeddings[nxt] - embeddings[prev]))
    return torch.stack(out)


@pytest.mark.parametrize("keys", [[0, 8], [2, 6, 9], [3], [0, 5, 11], [4, 10]])
def test_looped_interpolation_is_prompt_travels_rule(keys):
    gen = torch.Generator().manual_seed(0)
    embeddings = {k: torch.randn(5, 3, generator=gen) for k in keys}
    got = interpolate(embeddings, 12, "linear", loop=True)
    torch.testing.assert_close(got, expected_frames(embeddings, 12), rtol=0, atol=1e-6)
    for k in keys:
        assert torch.equal(got[k], embeddings[k])  # a keyframe's own, exactly


def test_without_loop_the_ends_hold_and_with_it_they_travel_round():
    a, b = torch.zeros(2), torch.ones(2)
    held = interpolate({2: a, 6: b}, 10, "linear")
    looped = interpolate({2: a, 6: b}, 10, "linear", loop=True)
    assert torch.equal(held[9], b) and torch.equal(held[0], a)
    # From 6 (b) round to 12 ≡ 2 (a): frame 9 is half-way, frame 0 two thirds of the way.
    torch.testing.assert_close(looped[9], torch.full((2,), 0.5))
    torch.testing.assert_close(looped[0], torch.full((2,), 1 / 3))
    none = interpolate({2: a, 6: b}, 10, "none", loop=True)
    assert torch.equal(none[0], b) and torch.equal(none[9], b)  # the latest keyframe, counted round


def test_the_last_keyframe_is_held_towards_the_clips_end_when_looping():
    # prompt-travel's prompt_preprocess: the last gap runs to the clip's length.
    assert held_keyframes({0: "a", 8: "b"}, 0.5, 16) == {0: "a", 4: "a", 8: "b", 12: "b"}
    assert held_keyframes({0: "a", 8: "b"}, 0.5) == {0: "a", 4: "a", 8: "b"}
    assert held_keyframes({0: "a", 8: "b"}, 1.0, 16) == {0: "a", 7: "a", 8: "b", 15: "b"}
    assert held_keyframes({0: "a", 15: "b"}, 0.5, 16) == {0: "a", 8: "a", 15: "b"}  # no frame after the last


def test_frames_equal_diffusers_given_prompt_travels_looped_text(make_pipeline, one_thread):
    """diffusers' FreeNoise pipeline (window = clip: only the text is per frame), its per-frame text built from its
    own `encode_prompt` of each keyframe by prompt-travel's rule (written out above), draws our looped travel."""
    pipe = make_pipeline("v2")
    ref = diffusers_pipeline(pipe, motion_adapter=True)
    ref.enable_free_noise(context_length=8, context_stride=4)
    prompts, frames = {1: A, 4: B, 6: C}, 8

    def looped_text(prompt, num_frames, device, negative_prompt, **_):  # noqa: ANN001, ANN202
        own = {k: ref.encode_prompt(p, device, 1, True, negative_prompt)[0][0] for k, p in prompt.items()}
        uncond = ref.encode_prompt(A, device, 1, True, negative_prompt)[1].repeat(num_frames, 1, 1)
        return torch.cat([uncond, expected_frames(own, num_frames)]), uncond  # as diffusers' own: [uncond; cond]

    ref._encode_prompt_free_noise = looped_text
    args = dict(negative_prompt="blurry", num_frames=frames, height=16, width=16, num_inference_steps=3)
    expected = ref(prompts, **args, guidance_scale=7.5, generator=torch.Generator().manual_seed(7), output_type="np")
    got = pipe(prompts, **args, guidance_scale=7.5, seed=7, progress=False, prompt_travel_loop=True)
    np.testing.assert_allclose(got, expected.frames, rtol=0, atol=1e-4)
    unlooped = pipe(prompts, **args, guidance_scale=7.5, seed=7, progress=False)
    assert np.abs(got - unlooped).max() > 1e-2  # the frames around the ends changed
