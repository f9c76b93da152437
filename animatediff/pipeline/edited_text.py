"""Prompt editing in a call: the call's texts at each sampling step, in runs of steps that read the same text.

A call's texts (its prompts, negative prompts, prompt travel keyframes, SDXL's second prompts) are each read with
A1111's `[from:to:when]` and `[a|b]` (`animatediff.prompt_editing`) at every step of the run; the steps whose texts
all come out the same form one run, which the pipeline encodes once and denoises with one predictor
(`sampling.switched.switched_at_steps`).
"""

from __future__ import annotations

from collections.abc import Callable

from animatediff.prompt_editing import has_edits, prompt_at_step

Texts = str | list[str] | dict[int, str] | None
"""One of a call's text arguments: a prompt, a prompt per video, prompt travel's {frame: prompt}, or none."""


def _map(texts: Texts, read: Callable[[str], str]) -> Texts:
    if isinstance(texts, str):
        return read(texts)
    if isinstance(texts, list):
        return [read(t) if isinstance(t, str) else t for t in texts]
    if isinstance(texts, dict):
        return {k: read(t) if isinstance(t, str) else t for k, t in texts.items()}
    return texts


def _strings(texts: Texts) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    values = texts.values() if isinstance(texts, dict) else texts or ()
    return [t for t in values if isinstance(t, str)]


def edited(texts: tuple[Texts, ...]) -> bool:
    """Whether any of the texts holds a prompt edit."""
    return any(has_edits(s) for t in texts for s in _strings(t))


def edit_runs(editing: bool, steps: int, texts: tuple[Texts, ...]) -> list[tuple[int, tuple[Texts, ...]]]:
    """[(first 0-based step of a run, the texts every step of it reads)] over a run of `steps` steps, in order
    (runs that read the same texts, as `[a|b]`'s every other step, hold one tuple of them, so that they are read and
    encoded once); [(0, texts)] when `editing` is off or no text holds an edit."""
    if not editing or not edited(texts):
        return [(0, texts)]
    runs: list[tuple[int, tuple[Texts, ...]]] = []
    for step in range(steps):
        at = tuple(_map(t, lambda s, step=step: prompt_at_step(s, step, steps)) for t in texts)
        if not runs or runs[-1][1] != at:
            at = next((seen for _, seen in runs if seen == at), at)  # texts read before: the same object
            runs.append((step, at))
    return runs
