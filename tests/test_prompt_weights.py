"""A1111's prompt emphasis (`prompt_weighting="a1111"`): the syntax (and ComfyUI's) read into weighted runs, each
token's hidden states scaled by its weight with the prompt's mean kept, and a prompt without emphasis encoded exactly
as the plain tokenizer encodes it."""

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.prompt_weights import STEP, emphasized, fragments
from animatediff.text_encoding import encode_prompts

A1111_CASES = [
    ("a red circle", [("a red circle", 1.0)]),
    ("a (red) circle", [("a ", 1.0), ("red", STEP), (" circle", 1.0)]),
    ("a ((red)) circle", [("a ", 1.0), ("red", STEP * STEP), (" circle", 1.0)]),
    ("a [red] circle", [("a ", 1.0), ("red", 1 / STEP), (" circle", 1.0)]),
    ("(red circle:1.5), blue", [("red circle", 1.5), (", blue", 1.0)]),
    ("((red:0.5) circle)", [("red", 0.5 * STEP), (" circle", STEP)]),
    ("a \\(red\\) circle", [("a (red) circle", 1.0)]),  # escaped brackets are text
    ("a (red circle", [("a ", 1.0), ("red circle", STEP)]),  # unclosed: closes at the end
    ("a red) circle:2", [("a red) circle:2", 1.0)]),  # a stray bracket, a colon outside brackets: text
    ("", [("", 1.0)]),
]
COMFY_CASES = [  # ComfyUI: round brackets only, an explicit weight is not multiplied
    ("embedding:EasyNegative, (embedding:bad-hands.pt:1.2)", [("EasyNegative, ", 1.0), ("bad-hands", 1.2)]),
    ("a red circle", [("a red circle", 1.0)]),
    ("a (red) circle", [("a ", 1.0), ("red", STEP), (" circle", 1.0)]),
    ("a ((red)) circle", [("a ", 1.0), ("red", STEP * STEP), (" circle", 1.0)]),
    ("((red:0.5) circle)", [("red", 0.5), (" circle", STEP)]),  # an explicit weight is not multiplied
    ("(red circle:1.5), blue", [("red circle", 1.5), (", blue", 1.0)]),
    ("a [red] circle", [("a [red] circle", 1.0)]),  # square brackets are text
    ("a \\(red\\) circle", [("a (red) circle", 1.0)]),  # escaped brackets are text
    ("a (red circle", [("a (red circle", 1.0)]),  # unclosed: text
    ("(red:x)", [("red:x", STEP)]),  # not a number: part of the text, the pair's 1.1
    ("", [("", 1.0)]),
]


@pytest.mark.parametrize(
    ("weighting", "prompt", "runs"),
    [("a1111", *case) for case in A1111_CASES] + [("comfy", *case) for case in COMFY_CASES],
)
def test_the_syntax_reads_into_weighted_runs(weighting, prompt, runs):
    got = fragments(prompt, weighting)
    assert [t for t, _ in got] == [t for t, _ in runs]
    np.testing.assert_allclose([w for _, w in got], [w for _, w in runs])


def test_a_prompt_without_emphasis_encodes_as_plain_text(make_pipeline):
    pipe = make_pipeline()
    tok, enc = pipe.tokenizer, pipe.text_encoder
    prompts = ["a red circle", "a (red:1.0) circle", "a \\(red\\) circle, " + "red " * 40]
    with torch.no_grad():
        plain = encode_prompts(tok, enc, ["a red circle", "a red circle", "a (red) circle, " + "red " * 40])
        weighted = encode_prompts(tok, enc, prompts, weighting="a1111")
    torch.testing.assert_close(weighted, plain, rtol=0, atol=0)


def test_emphasis_scales_the_token_and_keeps_the_mean(make_pipeline):
    pipe = make_pipeline()
    tok, enc = pipe.tokenizer, pipe.text_encoder
    with torch.no_grad():
        plain = encode_prompts(tok, enc, ["a red circle"])
        strong = encode_prompts(tok, enc, ["a (red:1.5) circle"], weighting="a1111")
    torch.testing.assert_close(strong.mean(), plain.mean())
    red = len(tok("a", add_special_tokens=False).input_ids) + 1  # after the start token and "a"
    n_red = len(tok("red", add_special_tokens=False).input_ids)
    ratio = strong[0, red : red + n_red] / plain[0, red : red + n_red]
    others = strong[0, 0] / plain[0, 0]
    torch.testing.assert_close(ratio, torch.full_like(ratio, 1.5) * others)  # 1.5 × the rescale of every token


def test_emphasized_without_weights_is_the_input():
    x = torch.randn(2, 5, 3)
    assert emphasized(x, None) is x


def test_the_pipeline_reads_weights_only_when_asked(make_pipeline):
    pipe = make_pipeline()
    args = dict(num_frames=2, num_inference_steps=2, seed=1, progress=False)
    plain = pipe("a red circle", **args)
    assert np.array_equal(plain, pipe("a red circle", **args, prompt_weighting="a1111"))
    assert np.abs(pipe("a (red:1.8) circle", **args, prompt_weighting="a1111") - plain).max() > 1e-3
    assert np.array_equal(plain, pipe("a (red:1.0) circle", **args, prompt_weighting="comfy"))
    assert np.abs(pipe("a (red:1.8) circle", **args, prompt_weighting="comfy") - plain).max() > 1e-3
    assert np.array_equal(plain, pipe("a red circle", **args, prompt_weighting="comfy"))
    assert np.abs(pipe("a (red:1.8) circle", **args, prompt_weighting="comfy") - plain).max() > 1e-3
    with pytest.raises(InputError, match="prompt weighting 'compel': choose one of none, a1111, comfy"):
        pipe("a red circle", **args, prompt_weighting="compel")


def test_sdxl_reads_weights_in_both_encoders(tmp_path, one_thread):
    from tests.sdxl_tiny import tiny_sdxl_pipeline

    pipe = tiny_sdxl_pipeline(tmp_path)
    args = dict(num_frames=2, num_inference_steps=2, height=32, width=32, seed=1, progress=False)
    plain = pipe("a red circle", **args)
    assert np.array_equal(plain, pipe("a (red:1.0) circle", **args, prompt_weighting="a1111"))
    assert np.abs(pipe("a (red:1.8) circle", **args, prompt_weighting="a1111") - plain).max() > 1e-3
