"""Prompts → CLIP text embeddings, the way Stable Diffusion (one encoder) and SDXL (two, and a pooled one)
condition on text.

Clip skip counts as the UIs count it (A1111's "Clip skip", animatediff-cli-prompt-travel's `clip_skip`): 1 takes the
layer the model was trained on (SD1.x: the last; SDXL: the penultimate), 2 the one before it, and so on. diffusers'
`clip_skip` counts the layers skipped, one less: our N is its N − 1. As the UIs and diffusers do, SD1.x's earlier
layer still passes through the encoder's final layer norm; SDXL's hidden states never do, and its pooled text
always comes from the last layer.

With `weighting="a1111"` the prompts are read with A1111's emphasis syntax (`prompt_weights`): each token's hidden
states scaled by its weight, the prompt's mean kept; with "comfy" with ComfyUI's, each weighted token's hidden states
pushed away from the empty prompt's. With `long_prompts="chunks"` a prompt longer than CLIP's window
is read in chunks of it, as A1111 reads it (`prompt_chunks`): (n, 77 × chunks, D), each chunk's emphasis applied on
its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from animatediff.errors import InputError
from animatediff.prompt_chunks import (
    BREAK,
    Chunk,
    check_long_prompts,
    chunk_rows,
    prompt_chunks,
    prompt_tokens,
    room,
    token_rows,
)
from animatediff.prompt_editing import has_edits
from animatediff.prompt_weights import WEIGHT_SYNTAX, check_weighting, emphasized, fragments, pushed_from_empty


def input_device(encoder: torch.nn.Module) -> torch.device:
    """Where `encoder` takes its inputs: its weights' device, or under accelerate's CPU-offload hooks (weights in CPU
    memory, or on 'meta' between calls) the device it runs on."""
    for module in encoder.modules():
        device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
        if device is not None:
            return torch.device(device)
    return next(encoder.parameters()).device


def text_warnings(
    tokenizer: CLIPTokenizer,
    texts: Sequence[str],
    weighting: str = "none",
    long_prompts: str = "truncate",
    editing: bool = False,
) -> list[str]:
    """One line for each prompt that will not be read as its writer may expect: with `long_prompts` "truncate",
    longer than CLIP's window (the rest is cut off, as diffusers and the official code cut it) or holding A1111's
    `BREAK` (a word then); without `weighting`, written with `(words:1.2)` weights (read as plain words, as diffusers
    and the official code read them); without `editing`, written with A1111's prompt editing (`prompt_editing`)."""
    lines = []
    window = room(tokenizer)
    for text in dict.fromkeys(texts):
        short = text if len(text) <= 40 else text[:37] + "..."
        if long_prompts == "truncate":
            read = "".join(t for t, _ in fragments(text, weighting))
            ids = prompt_tokens(tokenizer, read)
            if len(ids) > window:
                dropped = tokenizer.decode(ids[window:]).strip()
                lines.append(
                    f"prompt {short!r} is {len(ids)} tokens and CLIP reads {window}: {dropped!r} is left out "
                    "(long prompts 'chunks' reads all of it, as A1111 does)"
                )
            if BREAK.search(text):
                lines.append(
                    f"prompt {short!r}: BREAK is read as a word (long prompts 'chunks' reads it as A1111 does)"
                )
        if weighting == "none" and WEIGHT_SYNTAX.search(text):
            lines.append(
                f"prompt {short!r}: weights such as '(words:1.2)' are read as words (prompt weighting 'a1111' "
                "reads them as weights)"
            )
        if not editing and has_edits(text):
            lines.append(
                f"prompt {short!r}: '[from:to:when]' and '[a|b]' are read as they are written (prompt editing "
                "switches the text during sampling, as A1111 does)"
            )
    return lines


def check_clip_skip(clip_skip: int, text_encoder: CLIPTextModel | None = None, trained_from_end: int = 1) -> None:
    """One line unless `clip_skip` is a whole number from 1 up that stays within the encoder's layers, counting from
    the layer it was trained on, `trained_from_end` (any such number without an encoder)."""
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or clip_skip < 1:
        raise InputError(f"clip skip must be a whole number from 1 (no skip) up, got {clip_skip!r}")
    if text_encoder is None:
        return
    most = text_encoder.config.num_hidden_layers - trained_from_end + 1
    if clip_skip > most:
        raise InputError(
            f"clip skip {clip_skip} goes past this text encoder's first layer "
            f"({text_encoder.config.num_hidden_layers} layers: clip skip {most} at most)"
        )


def final_layer_norm(text_encoder: CLIPTextModel) -> torch.nn.LayerNorm:
    """The encoder's final layer norm: on the model itself in transformers 5, under `text_model` before."""
    return getattr(text_encoder, "text_model", text_encoder).final_layer_norm


def _chunks(tokenizer: CLIPTokenizer, prompts: list[str], weighting: str, long_prompts: str) -> list[list[Chunk]]:
    """Each prompt's chunks (`prompt_chunks`), the reading settings checked first."""
    check_weighting(weighting)
    check_long_prompts(long_prompts)
    return [prompt_chunks(tokenizer, p, weighting, long_prompts) for p in prompts]


def _weighted(
    run: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]],
    tokenizer: CLIPTokenizer,
    ids: torch.Tensor,
    weights: torch.Tensor | None,
    weighting: str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`run` (rows → hidden states, pooled or None) over `ids`, its hidden states weighted as `weighting` says:
    A1111's emphasis, or ComfyUI's push from the empty prompt, whose row then runs in the same batch."""
    if weights is None or weighting != "comfy":
        hidden, pooled = run(ids)
        return emphasized(hidden, weights), pooled
    hidden, pooled = run(torch.cat([ids, token_rows(tokenizer, [""])[0].to(ids)]))
    return pushed_from_empty(hidden[:-1], weights, hidden[-1:]), None if pooled is None else pooled[:-1]


def _joined(hidden: torch.Tensor, n: int) -> torch.Tensor:
    """Rows (n × k, tokens, D) → each prompt's chunks joined along the tokens, (n, k × tokens, D)."""
    return hidden.unflatten(0, (n, -1)).flatten(1, 2)


def encode_prompts(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    prompts: list[str],
    clip_skip: int = 1,
    weighting: str = "none",
    long_prompts: str = "truncate",
) -> torch.Tensor:
    """Hidden states at the tokenizer's full length (77 for SD), padded and truncated: (len(prompts), 77, D), or
    with `long_prompts` "chunks" 77 per chunk, (n, 77 × chunks, D); the last layer's, or with `clip_skip` N > 1 the
    N-th from the end through the final layer norm; weights read with `weighting` "a1111" or "comfy"."""
    ids, weights = chunk_rows(tokenizer, _chunks(tokenizer, prompts, weighting, long_prompts))
    if clip_skip > 1:
        check_clip_skip(clip_skip, text_encoder)

    def run(rows: torch.Tensor) -> tuple[torch.Tensor, None]:
        rows = rows.to(input_device(text_encoder))
        if clip_skip == 1:
            return text_encoder(rows)[0], None
        hidden = text_encoder(rows, output_hidden_states=True).hidden_states[-clip_skip]
        return final_layer_norm(text_encoder)(hidden), None

    return _joined(_weighted(run, tokenizer, ids, weights, weighting)[0], len(prompts))


def encode_prompts_pooled(
    tokenizers: Sequence[CLIPTokenizer],
    text_encoders: Sequence[CLIPTextModel | CLIPTextModelWithProjection],
    prompts: list[str],
    clip_skip: int = 1,
    weighting: str = "none",
    long_prompts: str = "truncate",
    prompts_2: list[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's text: every encoder's penultimate hidden states (with `clip_skip` N, the (N + 1)-th from the end) joined
    along the features, (n, 77, D1 + D2) or under `long_prompts` "chunks" (n, 77 × chunks, D1 + D2), and the pooled
    projection of the encoder that has one (the last), (n, P): of the first chunk, as A1111 takes it. `prompts_2`:
    what the second encoder reads (diffusers' `prompt_2`); None: the same prompts."""
    states, pooled = [], None
    n = len(prompts)
    texts = [prompts, *[prompts_2 or prompts] * (len(tokenizers) - 1)]
    per_encoder = [_chunks(tok, own, weighting, long_prompts) for tok, own in zip(tokenizers, texts, strict=True)]
    chunks = max(len(c) for per_prompt in per_encoder for c in per_prompt)  # one length for both encoders
    for tokenizer, encoder, per_prompt in zip(tokenizers, text_encoders, per_encoder, strict=True):
        check_clip_skip(clip_skip, encoder, trained_from_end=2)
        ids, weights = chunk_rows(tokenizer, per_prompt, chunks)

        def run(rows: torch.Tensor, encoder: torch.nn.Module = encoder) -> tuple[torch.Tensor, torch.Tensor | None]:
            out = encoder(rows.to(input_device(encoder)), output_hidden_states=True)
            # CLIPTextModelWithProjection gives its pooled projection (text_embeds) first
            return out.hidden_states[-(clip_skip + 1)], out[0] if out[0].ndim == 2 else None

        hidden, own_pooled = _weighted(run, tokenizer, ids, weights, weighting)
        if own_pooled is not None:
            pooled = own_pooled.unflatten(0, (n, -1))[:, 0]
        states.append(_joined(hidden, n))
    if pooled is None:
        raise ValueError("no text encoder with a pooled projection (SDXL's text_encoder_2)")
    return torch.cat(states, dim=-1), pooled
