"""Prompts → CLIP text embeddings, the way Stable Diffusion (one encoder) and SDXL (two, and a pooled one)
condition on text."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer


def _ids(tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def input_device(encoder: torch.nn.Module) -> torch.device:
    """Where `encoder` takes its inputs: its weights' device, or under accelerate's CPU-offload hooks (weights in CPU
    memory, or on 'meta' between calls) the device it runs on."""
    for module in encoder.modules():
        device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
        if device is not None:
            return torch.device(device)
    return next(encoder.parameters()).device


def encode_prompts(tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, prompts: list[str]) -> torch.Tensor:
    """Last hidden states at the tokenizer's full length (77 for SD), padded and truncated: (len(prompts), 77, D)."""
    return text_encoder(_ids(tokenizer, prompts).to(input_device(text_encoder)))[0]


def encode_prompts_pooled(
    tokenizers: Sequence[CLIPTokenizer],
    text_encoders: Sequence[CLIPTextModel | CLIPTextModelWithProjection],
    prompts: list[str],
) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's text: every encoder's penultimate hidden states joined along the features, (n, 77, D1 + D2), and the
    pooled projection of the encoder that has one (the last), (n, P)."""
    states, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, text_encoders, strict=True):
        out = encoder(_ids(tokenizer, prompts).to(input_device(encoder)), output_hidden_states=True)
        if out[0].ndim == 2:  # CLIPTextModelWithProjection: text_embeds first
            pooled = out[0]
        states.append(out.hidden_states[-2])
    if pooled is None:
        raise ValueError("no text encoder with a pooled projection (SDXL's text_encoder_2)")
    return torch.cat(states, dim=-1), pooled
