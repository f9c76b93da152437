"""Prompts → CLIP text embeddings, the way Stable Diffusion conditions on text."""

from __future__ import annotations

import torch
from transformers import CLIPTextModel, CLIPTokenizer


def encode_prompts(tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, prompts: list[str]) -> torch.Tensor:
    """Last hidden states at the tokenizer's full length (77 for SD), padded and truncated: (len(prompts), 77, D)."""
    ids = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(ids.to(text_encoder.device))[0]
