"""The text step: prompts → the embeddings every denoising step is conditioned on.

One embedding per video, (b, tokens, dim), for plain prompts; per-frame embeddings (1, f, tokens, dim) for prompt
travel (`prompt_travel.PromptTravel`: keyframe prompts, their embeddings interpolated between keyframes). Both flow
through the same steps: the UNet takes either, and context windows pass each window its frames' part.

A prompt longer than CLIP's window is cut at it, or with `long_prompts="chunks"` read in chunks of it
(`prompt_chunks`): then the prompts conditioned on together (a video's prompt and negative prompt, a prompt travel's
keyframes) are made one length with the empty prompt's chunk, as A1111 pads them (`same_length`).

An SDXL base encodes with both its text encoders (`text_encoding.encode_prompts_pooled`) and adds the pooled text,
(b, P) or (1, f, P) under prompt travel, which `pipeline.sdxl` hands to the UNet with the size conditioning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from animatediff.base_model import BaseTraits
from animatediff.errors import InputError
from animatediff.pipeline.prompt_travel import PromptTravel, interpolate, prompt_travel
from animatediff.prompt_chunks import check_long_prompts
from animatediff.prompt_weights import check_weighting
from animatediff.text_encoding import check_clip_skip, encode_prompts, encode_prompts_pooled, text_warnings

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


def check_text_reading(
    text_encoder: CLIPTextModel, sdxl: bool, clip_skip: int, weighting: str, long_prompts: str
) -> None:
    """One line for a clip skip past the encoder's layers (SDXL's are counted from the penultimate), a weighting or
    a long-prompt mode that is not one of the choices."""
    check_clip_skip(clip_skip, text_encoder, trained_from_end=2 if sdxl else 1)
    check_weighting(weighting)
    check_long_prompts(long_prompts)


def prompt_encoder(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    second: SecondEncoder | None,
    clip_skip: int = 1,
    weighting: str = "none",
    long_prompts: str = "truncate",
) -> Callable[[list[str]], tuple[torch.Tensor, torch.Tensor | None]]:
    """prompts ↦ (embeddings, pooled or None) with one encoder (SD1.x) or two (SDXL), from the layer `clip_skip`
    picks (`text_encoding`: 1 = the layer the model was trained on), emphasis read by `weighting`, long prompts cut
    or read in chunks by `long_prompts`."""
    if second is None:
        return lambda prompts, prompts_2=None: (
            encode_prompts(tokenizer, text_encoder, prompts, clip_skip, weighting, long_prompts),
            None,
        )
    tokenizers, encoders = (tokenizer, second[0]), (text_encoder, second[1])
    return lambda prompts, prompts_2=None: encode_prompts_pooled(
        tokenizers, encoders, prompts, clip_skip, weighting, long_prompts, prompts_2
    )


def second_prompts(
    prompt_2: str | list[str] | None,
    negative_prompt_2: str | list[str] | None,
    prompts: list[str],
    negatives: list[str],
    sdxl: bool,
    travel: bool,
) -> tuple[list[str] | None, list[str] | None]:
    """(what SDXL's second text encoder reads for the prompts, for the negative prompts), as diffusers'
    `prompt_2` and `negative_prompt_2`: each the first encoder's text where not given; (None, None) when neither is.
    One line for them with an SD1.x base or a prompt travel."""
    if prompt_2 is None and negative_prompt_2 is None:
        return None, None
    if not sdxl:
        raise InputError("prompt_2 and negative_prompt_2 are for SDXL's second text encoder; this is an SD1.x model")
    if travel:
        raise InputError("prompt_2 and negative_prompt_2 take plain prompts, not a prompt travel")
    second, negatives_2 = prompt_batch(prompt_2 if prompt_2 is not None else prompts, negative_prompt_2)
    if len(second) != len(prompts):
        raise InputError(f"{len(second)} prompt_2 for {len(prompts)} prompts")
    return second, negatives if negative_prompt_2 is None else negatives_2


def same_length(
    embeddings: list[torch.Tensor], encode: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor | None]]
) -> list[torch.Tensor]:
    """Embeddings (..., tokens, D) of prompts encoded apart, the shorter ones followed by the empty prompt's chunk
    (encoded by `encode`) until all are as long as the longest, as A1111 pads prompts of different chunk counts."""
    longest = max(e.shape[-2] for e in embeddings)
    if all(e.shape[-2] == longest for e in embeddings):
        return embeddings
    empty = encode([""])[0][0]  # (window, D)
    out = []
    for e in embeddings:
        fill = empty.to(e).repeat((longest - e.shape[-2]) // empty.shape[0], 1)
        out.append(torch.cat([e, fill.expand(*e.shape[:-2], *fill.shape)], dim=-2))
    return out


@dataclass
class CallText:
    """A call's texts read: a prompt travel (None for plain prompts), the prompts and negative prompts (the travel's
    batch under one), and what SDXL's second encoder reads for each (None, None: the same)."""

    travel: PromptTravel | None
    prompts: list[str]
    negatives: list[str]
    second: tuple[list[str] | None, list[str] | None]

    @property
    def texts(self) -> list[str]:
        """Every text the call encodes (the travel's keyframe prompts and negative prompts, or the prompts and negative
        prompts), for the warnings."""
        if self.travel is not None:
            return [*self.travel.texts, *self.travel.negative_prompts.values()]
        return [*self.prompts, *self.negatives]

    @property
    def said(self) -> list[str]:
        """The prompts (not the negative ones)."""
        return self.travel.texts if self.travel is not None else self.prompts


def read_call_text(texts: tuple, interpolation: str, num_frames: int, sdxl: bool, loop: bool = False) -> CallText:
    """A call's text arguments (prompt, negative prompt, prompt_2, negative prompt_2) checked and read
    (`prompt_travel`, `prompt_batch`, `second_prompts`)."""
    prompt, negative_prompt, prompt_2, negative_prompt_2 = texts
    travel = prompt_travel(prompt, negative_prompt, interpolation, num_frames, loop)  # None unless a dict
    prompts, negatives = travel.batch if travel else prompt_batch(prompt, negative_prompt)
    second = second_prompts(prompt_2, negative_prompt_2, prompts, negatives, sdxl, travel is not None)
    return CallText(travel, prompts, negatives, second)


def call_warnings(
    calls: list[CallText],
    tokenizer: CLIPTokenizer,
    traits: BaseTraits | None,
    height: int,
    width: int,
    weighting: str,
    long_prompts: str,
    editing: bool,
) -> list[str]:
    """The lines a call logs about its texts (each read, under prompt editing, at every run of steps): the base's
    own (`BaseTraits.prompt_warnings`: words it never saw, sizes it draws badly) and how they are read
    (`text_encoding.text_warnings`)."""
    said = [t for call in calls for t in call.said]
    texts = [t for call in calls for t in call.texts]
    added = frozenset(tokenizer.added_tokens_encoder)  # loaded embeddings' words (and CLIP's own two)
    lines = traits.prompt_warnings(said, height, width, added) if traits is not None else []
    return [*lines, *text_warnings(tokenizer, texts, weighting, long_prompts, editing)]


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
    long_prompts: str = "truncate",
    prompts_2: list[str] | None = None,
    negatives_2: list[str] | None = None,
) -> TextConditioning:
    """Embeddings of the prompts (and, when `guidance`, of the negative prompts), on the UNet's device and dtype.

    With `travel` (which then replaces `prompts` and `negatives`), the one video's per-frame embeddings over
    `num_frames` frames (`encode_frame_text`). `second`: SDXL's second tokenizer and encoder (then the pooled text
    comes too); `zero_negative`: the unconditional text is zeros (SDXL with no negative prompt given); `clip_skip`: the
    encoder layer the text is taken from (`text_encoding`; 1 = the one the model was trained on); `weighting`: "a1111"
    reads A1111's emphasis syntax (`prompt_weights`), "none" the prompts as plain text; `long_prompts`: "chunks"
    reads a prompt longer than CLIP's window in chunks of it (`prompt_chunks`), "truncate" cuts it there;
    `prompts_2` / `negatives_2`: what SDXL's second encoder reads (`second_prompts`), None for the same text."""
    encode = prompt_encoder(tokenizer, text_encoder, second, clip_skip, weighting, long_prompts)
    if travel is not None:
        text = encode_frame_text(encode, travel, num_frames, guidance, device, dtype)
    else:
        cond, pooled = encode(prompts, prompts_2)
        uncond, pooled_uncond = encode(negatives, negatives_2) if guidance and not zero_negative else (None, None)
        if uncond is not None:
            cond, uncond = same_length([cond, uncond], encode)
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
    same prompt and negative prompt the text is per video, (1, tokens, dim), exactly what the plain prompt gives.
    Keyframe prompts read in chunks of different counts are made one length first (`same_length`)."""
    if num_frames is None:
        num_frames = travel.num_frames
    if num_frames is None:
        raise InputError("prompt travel needs the clip's number of frames")
    said = [*travel.prompts.values(), *(travel.negative_prompts.values() if guidance else ())]
    own: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for text in dict.fromkeys(said):
        embeddings, pooled = encode([text])
        own[text] = (embeddings[0], None if pooled is None else pooled[0])
    for text, embeddings in zip(own, same_length([e for e, _ in own.values()], encode), strict=True):
        own[text] = (embeddings, own[text][1])

    def frames(keyframe_prompts: dict[int, str], part: int) -> torch.Tensor | None:
        if own[next(iter(keyframe_prompts.values()))][part] is None:
            return None
        if travel.constant:
            return own[next(iter(keyframe_prompts.values()))][part][None].to(device, dtype)
        embeddings = {k: own[text][part].float() for k, text in keyframe_prompts.items()}
        return interpolate(embeddings, num_frames, travel.interpolation, travel.loop)[None].to(device, dtype)

    cond, pooled = frames(travel.prompts, 0), frames(travel.prompts, 1)
    if not guidance:
        return TextConditioning(cond, None, pooled)
    return TextConditioning(cond, frames(travel.negative_prompts, 0), pooled, frames(travel.negative_prompts, 1))
