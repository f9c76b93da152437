"""A prompt as the token rows its text encoder reads, and prompts longer than CLIP's window.

CLIP reads `model_max_length` tokens (77 for SD): a start token, at most 75 of the prompt's, an end token, padding.
How a longer prompt is read (`long_prompts`):

- "truncate" (the default, as the official code and diffusers read prompts): one row; what follows the 75th token
  is left out.
- "chunks" (as A1111 and ComfyUI read them): the prompt's tokens in chunks of at most 75, each its own row with its
  own start, end and padding, each encoded on its own and the hidden states joined along the tokens, so the UNet
  attends to 77 × chunks tokens. As in A1111, the word `BREAK` (upper case, a word of its own) ends a chunk early,
  and a chunk that fills up ends after its last comma when that comma is at most `COMMA_BACKTRACK` tokens back, the
  rest moving to the next chunk. A prompt that fits one chunk reads exactly as under "truncate".

Prompts conditioned on together (a batch, its negative prompts, a prompt travel's keyframes) are made the same
length with chunks of the empty prompt, as A1111 pads them: `chunk_rows(..., chunks=)` here, and `pipeline.text`
for prompts encoded apart.
"""

from __future__ import annotations

import re

import torch
from transformers import CLIPTokenizer

from animatediff.errors import InputError
from animatediff.prompt_weights import fragments

LONG_PROMPTS = ("truncate", "chunks")
"""How a prompt longer than CLIP's window is read: cut at it, or in chunks of it."""
COMMA_BACKTRACK = 20
"""A full chunk ends after its last comma when that comma is at most this many tokens back (A1111's default)."""
BREAK = re.compile(r"\s*\bBREAK\b\s*")
"""The word that ends a chunk under "chunks"."""

Chunk = tuple[list[int], list[float]]
"""A chunk's tokens (without start, end and padding) and each token's weight."""


def check_long_prompts(long_prompts: str) -> None:
    if long_prompts not in LONG_PROMPTS:
        raise InputError(f"long prompts {long_prompts!r}: choose one of {', '.join(LONG_PROMPTS)}")


def room(tokenizer: CLIPTokenizer) -> int:
    """How many of a prompt's tokens one row holds: the window less the start and end tokens."""
    return tokenizer.model_max_length - 2


def _embedding_ids(tokenizer: CLIPTokenizer) -> dict[int, list[int]]:
    """Each multi-vector embedding's first token → all its tokens (`formats.embeddings` adds `word`, `word_1`, …)."""
    added = tokenizer.added_tokens_encoder
    spans = {}
    for name, first in added.items():
        ids = [first]
        while f"{name}_{len(ids)}" in added:
            ids.append(added[f"{name}_{len(ids)}"])
        if len(ids) > 1:
            spans[first] = ids
    return spans


def prompt_tokens(tokenizer: CLIPTokenizer, text: str) -> list[int]:
    """`text`'s token ids without start and end, an embedding's word standing for all its vectors' tokens."""
    ids = tokenizer(text, add_special_tokens=False, verbose=False).input_ids
    spans = _embedding_ids(tokenizer)
    return [t for i in ids for t in spans.get(i, [i])] if spans else ids


def prompt_chunks(
    tokenizer: CLIPTokenizer, prompt: str, weighting: str = "none", long_prompts: str = "truncate"
) -> list[Chunk]:
    """The prompt's tokens and weights (`weighting` "a1111" or "comfy": read as A1111 or ComfyUI reads them, else all
    1), one chunk cut at the window under "truncate", as many as it takes under "chunks" (at least one; an empty
    prompt is one empty chunk)."""
    check_long_prompts(long_prompts)
    runs = fragments(prompt, weighting)
    if long_prompts == "truncate":
        ids: list[int] = []
        weights: list[float] = []
        for text, weight in runs:
            piece = prompt_tokens(tokenizer, text)
            ids += piece
            weights += [weight] * len(piece)
        return [(ids[: room(tokenizer)], weights[: room(tokenizer)])]
    commas = prompt_tokens(tokenizer, ",")
    comma = commas[0] if len(commas) == 1 else None
    chunks: list[Chunk] = []
    chunk: Chunk = ([], [])
    last_comma = -1

    def close() -> None:
        nonlocal chunk, last_comma
        chunks.append(chunk)
        chunk, last_comma = ([], []), -1

    for text, weight in runs:
        for i, part in enumerate(BREAK.split(text)):
            if i > 0:
                close()
            for token in prompt_tokens(tokenizer, part):
                full = len(chunk[0]) == room(tokenizer)
                if token == comma:
                    last_comma = len(chunk[0])
                elif full and last_comma != -1 and len(chunk[0]) - last_comma <= COMMA_BACKTRACK:
                    cut = last_comma + 1
                    moved = (chunk[0][cut:], chunk[1][cut:])
                    chunk = (chunk[0][:cut], chunk[1][:cut])
                    close()
                    chunk = moved
                if len(chunk[0]) == room(tokenizer):
                    close()
                chunk[0].append(token)
                chunk[1].append(weight)
    if chunk[0] or not chunks:
        close()
    return chunks


def chunk_rows(
    tokenizer: CLIPTokenizer, per_prompt: list[list[Chunk]], chunks: int = 1
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(token ids (prompts × k, window), each token's weight in that shape or None where every weight is 1): each
    prompt's chunks (`prompt_chunks`) as rows [start, tokens, end, padding] in order, k of them per prompt, the
    shorter prompts' filled up with the empty prompt's row; k is the most chunks a prompt takes, and at least
    `chunks`. A row is what the tokenizer itself gives for the chunk's text, padded to the window."""
    k = max(chunks, *(len(c) for c in per_prompt))
    ids, weights = [], []
    for prompt_rows in per_prompt:
        for tokens, token_weights in prompt_rows + [([], [])] * (k - len(prompt_rows)):
            padding = room(tokenizer) - len(tokens)
            ids.append([tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id, *[tokenizer.pad_token_id] * padding])
            weights.append([1.0, *token_weights, 1.0, *[1.0] * padding])
    weight_tensor = torch.tensor(weights)
    return torch.tensor(ids), None if bool((weight_tensor == 1).all()) else weight_tensor


def token_rows(
    tokenizer: CLIPTokenizer,
    prompts: list[str],
    weighting: str = "none",
    long_prompts: str = "truncate",
    chunks: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`chunk_rows` of `prompts`, each read into chunks by `prompt_chunks`."""
    return chunk_rows(tokenizer, [prompt_chunks(tokenizer, p, weighting, long_prompts) for p in prompts], chunks)
