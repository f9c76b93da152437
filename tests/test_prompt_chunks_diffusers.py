"""Long prompts in chunks against diffusers: its AnimateDiffPipeline and AnimateDiffSDXLPipeline read 77 tokens,
so they are handed the text built as A1111 builds it from diffusers' own `encode_prompt` of each chunk's words (and
of the empty prompt for the shorter negative prompt); our `long_prompts="chunks"` gives the same frames."""

import numpy as np
import torch

from tests.diffusers_reference import diffusers_pipeline
from tests.sdxl_tiny import tiny_sdxl_pipeline
from tests.test_prompt_chunks import words
from tests.test_sdxl_pipeline import reference as sdxl_reference

PROMPT = words(160)  # chunks of 75, 75 and 10 one-token words
CHUNKS = [words(75), words(75, start=75), words(10, start=150)]
ARGS = dict(num_frames=4, num_inference_steps=3, guidance_scale=7.5)


def test_chunks_match_diffusers_given_each_chunks_text(make_pipeline, one_thread):
    ours = make_pipeline("v2")
    reference = diffusers_pipeline(ours)
    cpu = torch.device("cpu")
    with torch.no_grad():
        chunks = [reference.encode_prompt(c, cpu, 1, False)[0] for c in CHUNKS]
        negative = [reference.encode_prompt(t, cpu, 1, False)[0] for t in ("blurry", "", "")]
    generator = torch.Generator("cpu").manual_seed(3)
    expected = reference(
        prompt_embeds=torch.cat(chunks, dim=1), negative_prompt_embeds=torch.cat(negative, dim=1),
        height=16, width=16, **ARGS, generator=generator, output_type="np",
    ).frames  # fmt: skip
    got = ours(PROMPT, "blurry", height=16, width=16, **ARGS, seed=3, progress=False, long_prompts="chunks")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_sdxl_chunks_match_diffusers_with_the_first_chunks_pooled_text(tmp_path, one_thread):
    ours = tiny_sdxl_pipeline(tmp_path)
    reference = sdxl_reference(ours)
    cpu = torch.device("cpu")

    def encoded(text: str) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, _, pooled, _ = reference.encode_prompt(text, device=cpu, do_classifier_free_guidance=False)
        return embeds, pooled

    with torch.no_grad():
        chunks = [encoded(c) for c in CHUNKS]
        negative = [encoded(t) for t in ("blurry", "", "")]
    generator = torch.Generator("cpu").manual_seed(5)
    expected = reference(
        prompt_embeds=torch.cat([e for e, _ in chunks], dim=1), pooled_prompt_embeds=chunks[0][1],
        negative_prompt_embeds=torch.cat([e for e, _ in negative], dim=1),
        negative_pooled_prompt_embeds=negative[0][1],
        height=32, width=32, **ARGS, generator=generator, output_type="np",
    ).frames  # fmt: skip
    got = ours(PROMPT, "blurry", height=32, width=32, **ARGS, seed=5, progress=False, long_prompts="chunks")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
