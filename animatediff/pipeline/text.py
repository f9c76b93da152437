"""The text step: prompts → the embeddings every denoising step is conditioned on.

One embedding per video, (b, tokens, dim), for plain prompts; per-frame embeddings (1, f, tokens, dim) for prompt
travel (`prompt_travel.PromptTravel`: keyframe prompts, their embeddings interpolated between keyframes). Both flow
through the same steps: the UNet takes either, and context windows pass each window its frames' part.

An SDXL base encodes with both its text encoders (`text_encoding.encode_prompts_pooled`) and adds the pooled text,
(b, P) or (1, f, P) under prompt travel, which `pipeline.sdxl` hands to the UNet with the size conditioning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from animatediff.errors import InputError
from animatediff.pipeline.prompt_travel import PromptTravel, interpolate
from animatediff.text_encoding import encode_prompts, encode_prompts_pooled

SecondEncoder = tuple[CLIPTokenizer, CLIPTextModelWithProjection]
"""SDXL's second tokenizer and text encoder."""


@dataclass
class TextConditioning:
    """What the UNet is conditioned on: the prompts' embeddings and, under guidance, the negative prompts'."""

    cond: torch.Tensor
    """(b, tokens, dim) per video, or (b, f, tokens, dim) per frame."""
    uncond: torch.Tensor | None
    """The same shape for the negative prompts; None without guidance."""
    pooled: torch.Tensor | None = None
    """SDXL: the pooled text, (b, P) per video or (b, f, P) per frame; None for SD1.x."""
    pooled_uncond: torch.Tensor | None = None
    """SDXL: the negative prompts' pooled text under guidance."""


def prompt_encoder(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    second: SecondEncoder | None,
    clip_skip: int = 1,
    weighting: str = "none",
) -> Callable[[list[str]], tuple[torch.Tensor, torch.Tensor | None]]:
    """prompts ↦ (embeddings, pooled or None) with one encoder (SD1.x) or two (SDXL), from the layer `clip_skip`
    picks (`text_encoding`: 1 = the layer the model was trained on), emphasis read by `weighting`."""
    if second is None:
        return lambda prompts: (encode_prompts(tokenizer, text_encoder, prompts, clip_skip, weighting), None)
    encoders = (text_encoder, second[1])
    return lambda prompts: encode_prompts_pooled((tokenizer, second[0]), encoders, prompts, clip_skip, weighting)


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
    second: SecondEncoder | None = None,
    zero_negative: bool = False,
    clip_skip: int = 1,
    weighting: str = "none",
) -> TextConditioning:
    """Embeddings of the prompts (and, when `guidance`, of the negative prompts), on the UNet's device and dtype.

    With `travel` (which then replaces `prompts` and `negatives`), the one video's per-frame embeddings over
    `num_frames` frames (`encode_frame_text`). `second`: SDXL's second tokenizer and encoder (then the pooled text
    comes too); `zero_negative`: the unconditional text is zeros (SDXL with no negative prompt given); `clip_skip`: the
    encoder layer the text is taken from (`text_encoding`; 1 = the one the model was trained on); `weighting`: "a1111"
    reads A1111's emphasis syntax (`prompt_weights`), "none" the prompts as plain text."""
    encode = prompt_encoder(tokenizer, text_encoder, second, clip_skip, weighting)
    if travel is not None:
        text = encode_frame_text(encode, travel, num_frames, guidance, device, dtype)
    else:
        cond, pooled = encode(prompts)
        uncond, pooled_uncond = encode(negatives) if guidance and not zero_negative else (None, None)
        text = TextConditioning(cond, uncond, pooled, pooled_uncond)
    if guidance and zero_negative:
        text.uncond = torch.zeros_like(text.cond)
        text.pooled_uncond = None if text.pooled is None else torch.zeros_like(text.pooled)
    return _to(text, device, dtype)


def _to(text: TextConditioning, device: torch.device, dtype: torch.dtype) -> TextConditioning:
    def move(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x.to(device, dtype)

    return TextConditioning(move(text.cond), move(text.uncond), move(text.pooled), move(text.pooled_uncond))


@torch.no_grad()
def encode_frame_text(
    encode: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor | None]],
    travel: PromptTravel,
    num_frames: int | None,
    guidance: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> TextConditioning:
    """Per-frame embeddings (1, f, tokens, dim) of a prompt travel, and of its negative prompts under guidance.

    Each keyframe's prompt is encoded on its own (its embedding is exactly the prompt's), the frames between are
    interpolated in float32 (`prompt_travel.interpolate`), and so is SDXL's pooled text. When every frame has the
    same prompt and negative prompt the text is per video, (1, tokens, dim), exactly what the plain prompt gives."""
    if num_frames is None:
        num_frames = travel.num_frames
    if num_frames is None:
        raise InputError("prompt travel needs the clip's number of frames")
    own: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def frames(keyframe_prompts: dict[int, str], part: int) -> torch.Tensor | None:
        for text in keyframe_prompts.values():
            if text not in own:
                embeddings, pooled = encode([text])
                own[text] = (embeddings[0], None if pooled is None else pooled[0])
        if own[next(iter(keyframe_prompts.values()))][part] is None:
            return None
        if travel.constant:
            return own[next(iter(keyframe_prompts.values()))][part][None].to(device, dtype)
        embeddings = {k: own[text][part].float() for k, text in keyframe_prompts.items()}
        return interpolate(embeddings, num_frames, travel.interpolation)[None].to(device, dtype)

    cond, pooled = frames(travel.prompts, 0), frames(travel.prompts, 1)
    if not guidance:
        return TextConditioning(cond, None, pooled)
    return TextConditioning(cond, frames(travel.negative_prompts, 0), pooled, frames(travel.negative_prompts, 1))
