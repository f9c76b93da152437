"""The text step: prompts → the embeddings every denoising step is conditioned on.

One embedding per video, (b, tokens, dim), for plain prompts; per-frame embeddings (1, f, tokens, dim) for prompt
travel (`prompt_travel.PromptTravel`: keyframe prompts, their embeddings interpolated between keyframes). Both flow
through the same steps: the UNet takes either, and context windows pass each window its frames' part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import CLIPTextModel, CLIPTokenizer

from animatediff.errors import InputError
from animatediff.pipeline.prompt_travel import PromptTravel, interpolate
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
    travel: PromptTravel | None = None,
    num_frames: int | None = None,
) -> TextConditioning:
    """Embeddings of the prompts (and, when `guidance`, of the negative prompts), on the UNet's device and dtype.

    With `travel` (which then replaces `prompts` and `negatives`), the one video's per-frame embeddings over
    `num_frames` frames (`encode_frame_text`)."""
    if travel is not None:
        return encode_frame_text(tokenizer, text_encoder, travel, num_frames, guidance, device, dtype)
    cond = encode_prompts(tokenizer, text_encoder, prompts).to(device, dtype)
    uncond = encode_prompts(tokenizer, text_encoder, negatives).to(device, dtype) if guidance else None
    return TextConditioning(cond, uncond)


@torch.no_grad()
def encode_frame_text(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    travel: PromptTravel,
    num_frames: int | None,
    guidance: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> TextConditioning:
    """Per-frame embeddings (1, f, tokens, dim) of a prompt travel, and of its negative prompts under guidance.

    Each keyframe's prompt is encoded on its own (its embedding is exactly the prompt's), the frames between are
    interpolated in float32 (`prompt_travel.interpolate`). When every frame has the same prompt and negative prompt
    the text is per video, (1, tokens, dim), exactly what the plain prompt gives."""
    if num_frames is None:
        num_frames = travel.num_frames
    if num_frames is None:
        raise InputError("prompt travel needs the clip's number of frames")
    own: dict[str, torch.Tensor] = {}

    def frames(keyframe_prompts: dict[int, str]) -> torch.Tensor:
        for text in keyframe_prompts.values():
            if text not in own:
                own[text] = encode_prompts(tokenizer, text_encoder, [text])[0]
        if travel.constant:
            return own[next(iter(keyframe_prompts.values()))][None].to(device, dtype)
        embeddings = {k: own[text].float() for k, text in keyframe_prompts.items()}
        return interpolate(embeddings, num_frames, travel.interpolation)[None].to(device, dtype)

    cond = frames(travel.prompts)
    uncond = frames(travel.negative_prompts) if guidance else None
    return TextConditioning(cond, uncond)
