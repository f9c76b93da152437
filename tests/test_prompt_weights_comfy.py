"""ComfyUI's prompt weights (`prompt_weighting="comfy"`; its syntax is read in test_prompt_weights.py): each weighted
token's hidden states pushed from the empty prompt's at the same place, empty + w × (token − empty), every other
token untouched."""

import numpy as np
import torch

from animatediff.text_encoding import encode_prompts


def test_weighted_tokens_are_pushed_from_the_empty_prompt_and_the_rest_stay(make_pipeline):
    pipe = make_pipeline()
    tok, enc = pipe.tokenizer, pipe.text_encoder
    with torch.no_grad():
        plain, empty = encode_prompts(tok, enc, ["a red circle", ""])
        (strong,) = encode_prompts(tok, enc, ["a (red:1.5) circle"], weighting="comfy")
        (same,) = encode_prompts(tok, enc, ["a (red:1) circle"], weighting="comfy")
        (skipped,) = encode_prompts(tok, enc, ["a (red:1.5) circle"], clip_skip=2, weighting="comfy")
        skipped_plain, skipped_empty = encode_prompts(tok, enc, ["a red circle", ""], clip_skip=2)
    red = 1 + len(tok("a", add_special_tokens=False).input_ids)
    reds = slice(red, red + len(tok("red", add_special_tokens=False).input_ids))
    torch.testing.assert_close(strong[reds], empty[reds] + 1.5 * (plain[reds] - empty[reds]))
    torch.testing.assert_close(skipped[reds], skipped_empty[reds] + 1.5 * (skipped_plain[reds] - skipped_empty[reds]))
    others = torch.ones(77, dtype=torch.bool)
    others[reds] = False
    torch.testing.assert_close(strong[others], plain[others], rtol=0, atol=0)  # nothing rescaled
    torch.testing.assert_close(same, plain, rtol=0, atol=0)


def test_comfy_weights_in_chunks_and_in_sdxl(make_pipeline, tmp_path):
    from tests.sdxl_tiny import tiny_sdxl_pipeline
    from tests.test_prompt_chunks import words

    pipe = make_pipeline()
    tok, enc = pipe.tokenizer, pipe.text_encoder
    with torch.no_grad():
        (plain,) = encode_prompts(tok, enc, [words(80) + " red"], long_prompts="chunks")
        (weighted,) = encode_prompts(tok, enc, [words(80) + " (red:2)"], weighting="comfy", long_prompts="chunks")
        (empty,) = encode_prompts(tok, enc, [""])
    red = slice(77 + 1 + 5, 77 + 1 + 5 + len(tok("red", add_special_tokens=False).input_ids))  # the 2nd chunk
    torch.testing.assert_close(weighted[red], empty[red.start - 77 : red.stop - 77] * -1 + 2 * plain[red])
    torch.testing.assert_close(weighted[:77], plain[:77], rtol=0, atol=0)
    sdxl = tiny_sdxl_pipeline(tmp_path)
    args = dict(num_frames=2, num_inference_steps=2, height=32, width=32, seed=1, progress=False)
    plain_frames = sdxl("a red circle", **args)
    assert np.array_equal(plain_frames, sdxl("a (red:1.0) circle", **args, prompt_weighting="comfy"))
    assert np.abs(sdxl("a (red:1.8) circle", **args, prompt_weighting="comfy") - plain_frames).max() > 1e-3
