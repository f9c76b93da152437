"""Prompt weights as A1111 and ComfyUI read them (`--prompt-weighting a1111` / `comfy`).

A1111's emphasis: `(words)` ×1.1, `[words]` ÷1.1, `(words:1.5)` ×1.5, nested brackets multiply, `\\(` `\\)` `\\[`
`\\]` are literal brackets; unclosed brackets close at the end of the prompt.

`weighted_fragments` splits a prompt into (text, weight) runs; `prompt_chunks` tokenizes each run on its own, so
every token carries its run's weight; `emphasized` scales the encoder's hidden states token by token, then rescales
each row (a prompt, or a chunk of a long one) so that its mean is the unweighted one's, as A1111's original emphasis
does (its default: "Original"). The start, end and padding tokens keep weight 1. Without weighting (the default, as
the official code and diffusers read prompts) brackets and numbers are words like any other.

ComfyUI's (its default token weight interpretation, "comfy"): only round brackets weigh, `(words)` ×1.1 per pair,
`(words:1.5)` sets 1.5 whatever the brackets around it, `\\(` `\\)` are literal and square brackets are text
(`comfy_fragments`); each weighted token's hidden states are pushed away from those of the empty prompt at the same
place, empty + w × (token − empty), and nothing is rescaled (`pushed_from_empty`).
"""

from __future__ import annotations

import re

import torch

from animatediff.errors import InputError

WEIGHTINGS = ("none", "a1111", "comfy")
"""How prompts are read: as plain text, with A1111's emphasis, or with ComfyUI's prompt weights."""
STEP = 1.1
"""What one pair of round brackets multiplies by (square brackets divide)."""
WEIGHT_SYNTAX = re.compile(r"\([^()]*:\s*[-+]?\d*\.?\d+\s*\)")
"""A weight written the way A1111 and ComfyUI write one, `(words:1.2)`: what a prompt read as plain text is warned
of."""
COMFY_EMBEDDING = re.compile(r"\bembedding:([^\s,()\[\]:]+?)(?:\.(?:safetensors|pt|bin|pth|ckpt))?(?=[\s,()\[\]:]|$)")
"""ComfyUI's way of writing a textual-inversion embedding in a prompt."""
_TOKENS = re.compile(r"\\[()\[\]\\]|\\|\(|\[|:\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)|\)|\]|[^\\()\[\]:]+|:")


def weighted_fragments(prompt: str) -> list[tuple[str, float]]:
    """`prompt` as runs of (text, weight), adjacent runs of one weight joined; a prompt without emphasis is one run
    of weight 1 (an empty prompt: [("", 1.0)])."""
    runs: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    for match in _TOKENS.finditer(prompt):
        text, weight = match.group(0), match.group(1)
        if text.startswith("\\") and len(text) == 2:
            runs.append([text[1], 1.0])
        elif text == "(":
            round_open.append(len(runs))
        elif text == "[":
            square_open.append(len(runs))
        elif weight is not None and round_open:
            scale(round_open.pop(), float(weight))
        elif text == ")" and round_open:
            scale(round_open.pop(), STEP)
        elif text == "]" and square_open:
            scale(square_open.pop(), 1 / STEP)
        else:
            runs.append([text, 1.0])
    for start in round_open:
        scale(start, STEP)
    for start in square_open:
        scale(start, 1 / STEP)
    return _joined(runs)


def _joined(runs: list) -> list[tuple[str, float]]:
    """(text, weight) runs with adjacent runs of one weight joined; none: [("", 1.0)]."""
    joined: list[tuple[str, float]] = []
    for text, weight in runs:
        if joined and joined[-1][1] == weight:
            joined[-1] = (joined[-1][0] + text, weight)
        else:
            joined.append((text, weight))
    return joined or [("", 1.0)]


def _comfy_groups(text: str) -> list[str]:
    """`text` split at its top-level round-bracket groups, as ComfyUI splits it: "a (b (c)) d" → ["a ", "(b (c))",
    " d"]; an unclosed group stays text."""
    groups, current, depth = [], "", 0
    for char in text:
        if char == "(":
            if depth == 0 and current:
                groups.append(current)
                current = ""
            current += char
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                groups.append(current + char)
                current = ""
            else:
                current += char
        else:
            current += char
    return [*groups, current] if current else groups


def _comfy_runs(text: str, weight: float) -> list[tuple[str, float]]:
    runs = []
    for group in _comfy_groups(text):
        if len(group) >= 2 and group[0] == "(" and group[-1] == ")":
            inner, inner_weight = group[1:-1], weight * STEP
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    inner, inner_weight = inner[:colon], float(inner[colon + 1 :])
                except ValueError:
                    pass
            runs += _comfy_runs(inner, inner_weight)
        else:
            runs.append((group, weight))
    return runs


def comfy_fragments(prompt: str) -> list[tuple[str, float]]:
    """`prompt` as runs of (text, weight) read as ComfyUI reads prompt weights, adjacent runs of one weight joined;
    ComfyUI's `embedding:NAME` (with or without the file's extension) is the embedding's word, NAME."""
    prompt = COMFY_EMBEDDING.sub(lambda m: m[1], prompt)
    escaped = prompt.replace("\\)", "\0\1").replace("\\(", "\0\2")
    runs = _comfy_runs(escaped, 1.0)
    return _joined([(text.replace("\0\1", ")").replace("\0\2", "("), weight) for text, weight in runs])


def fragments(prompt: str, weighting: str = "none") -> list[tuple[str, float]]:
    """`prompt` as (text, weight) runs under `weighting`: one run of weight 1 for "none"."""
    if weighting == "a1111":
        return weighted_fragments(prompt)
    if weighting == "comfy":
        return comfy_fragments(prompt)
    return [(prompt, 1.0)]


def check_weighting(weighting: str) -> None:
    if weighting not in WEIGHTINGS:
        raise InputError(f"prompt weighting {weighting!r}: choose one of {', '.join(WEIGHTINGS)}")


def emphasized(hidden: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Hidden states (n, tokens, D) scaled token by token by `weights` (n, tokens), then each prompt's rescaled to
    its unweighted mean (A1111's original emphasis); None: as they are."""
    if weights is None:
        return hidden
    mean = hidden.mean(dim=(1, 2), keepdim=True)
    scaled = hidden * weights.to(hidden)[..., None]
    return scaled * (mean / scaled.mean(dim=(1, 2), keepdim=True))


def pushed_from_empty(hidden: torch.Tensor, weights: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """ComfyUI's weights: each token of weight w ≠ 1 moved to empty + w × (token − empty), where `empty` (1, tokens,
    D) is the empty prompt's hidden states at the same places; tokens of weight 1 stay exactly as they are."""
    w = weights.to(hidden)[..., None]
    return torch.where(w != 1, empty + (hidden - empty) * w, hidden)
