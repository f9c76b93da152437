"""The text step: prompts → the embeddings every denoising step is conditioned on.

One embedding per video now, (b, tokens, dim); a per-frame text (b, f, tokens, dim), as prompt travel gives, flows
through the same steps: the UNet takes either, and context windows pass each window its frames' part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import CLIPTextModel, CLIPTokenizer

from animatediff.errors import InputError
from animatediff.text_encoding import encode_prompts


@dataclass
class TextConditioning:
    """What the UNet is conditioned on: the prompts' embeddings and, under guidance, the negative prompts'."""

    cond: torch.Tensor
    """(b, tokens, dim) per video, or (b, f, tokens, dim) per frame."""
    uncond: torch.Tensor | None
    """The same shape for the negative prompts; None without guidance."""


def prompt_batch(prompt: str | list[str], negative_prompt: str | list[str] | None) -> tuple[list[str], list[str]]:
    """(prompts, negative prompts), one video each: a single negative prompt is used for every video."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise InputError("no prompt given")
    negatives = negative_prompt if isinstance(negative_prompt, list) else [negative_prompt or ""] * len(prompts)
    if len(negatives) != len(prompts):
        raise InputError(f"{len(negatives)} negative prompts for {len(prompts)} prompts")
    return prompts, negatives


@torch.no_grad()
def encode_text(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    prompts: list[str],
    negatives: list[str],
    guidance: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> TextConditioning:
    """Embeddings of the prompts (and, when `guidance`, of the negative prompts), on the UNet's device and dtype."""
    cond = encode_prompts(tokenizer, text_encoder, prompts).to(device, dtype)
    uncond = encode_prompts(tokenizer, text_encoder, negatives).to(device, dtype) if guidance else None
    return TextConditioning(cond, uncond)
