"""Prompt travel: per-frame prompts given as keyframes, their text embeddings interpolated between keyframes.

The form animatediff-cli-prompt-travel (github.com/s9roll7/animatediff-cli-prompt-travel) made known as a config's
`prompt_map` {frame: prompt} with `head_prompt` / `tail_prompt` joined to every keyframe's prompt by ",", and that
diffusers' `AnimateDiffPipeline` takes as a `prompt` dict under FreeNoise (Qiu et al. 2024;
`_encode_prompt_free_noise` in diffusers/pipelines/free_noise_utils.py).

What it does now: every keyframe's prompt is encoded on its own, so a keyframe's embedding is exactly its prompt's.
Between two keyframes k0 < k1, frame j takes, with t = (j − k0) / (k1 − k0):

- "linear": (1 − t)·e0 + t·e1, computed as diffusers' default `prompt_interpolation_callback` (`_lerp`) does;
- "slerp": the spherical interpolation of the two whole embeddings, sin((1 − t)ω)/sin ω·e0 + sin(tω)/sin ω·e1
  with ω the angle between them, linear where they are nearly parallel (|cos ω| > 0.9995), as prompt-travel's
  `tensor_interpolation_slerp` does;
- "none": e0, the latest keyframe's embedding.

Frames before the first keyframe take the first keyframe's embedding, frames after the last the last one's, as
diffusers does. With `loop` the keyframes go round instead, as animatediff-cli-prompt-travel's do: a frame after the
last keyframe travels on towards the first (reached one frame past the clip's end), and a frame before the first comes
from the last, the distances counted around the clip. Negative prompts are one for every frame, or keyframes of their
own, interpolated the same way.

A prompt may also be written as the A1111 AnimateDiff extension writes prompt travel in its prompt box
(`text_keyframes`): lines before the first `N: prompt` line are the head, the `N: prompt` lines the keyframes, the
lines after the tail; each keyframe's prompt is `head, prompt, tail` (the head's and the tail's lines joined by ", ").
That extension interpolates with slerp: ask for "slerp" to draw as it does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from animatediff.errors import InputError, InputNotFound

INTERPOLATIONS = ("linear", "slerp", "none")
T = TypeVar("T")
"""What a keyframe holds: a prompt, or IP-Adapter images (`held_keyframes`)."""
PARALLEL = 0.9995
"""Above this |cos ω| slerp falls back to linear interpolation (prompt-travel's threshold)."""


def frame_index(key: object, what: str) -> int:
    """A keyframe's frame: a non-negative integer, or its decimal string (as JSON writes keys); else an InputError
    starting with `what`."""
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    if isinstance(key, str) and re.fullmatch(r"\d+", key.strip()):
        return int(key)
    raise InputError(f"{what}: frame {key!r} is not a non-negative integer (frames count from 0)")


def keyframes(raw: object, what: str = "prompt map") -> dict[int, str]:
    """{frame: prompt} in frame order, from a mapping whose keys are non-negative integers or their decimal strings
    (as JSON writes them) and whose values are prompts."""
    if not isinstance(raw, Mapping):
        raise InputError(f"{what}: expected a mapping of frame → prompt, got {type(raw).__name__}")
    if not raw:
        raise InputError(f"{what} is empty: give at least one frame → prompt")
    frames: dict[int, str] = {}
    for key, prompt in raw.items():
        frame = frame_index(key, what)
        if not isinstance(prompt, str):
            raise InputError(f"{what}: the prompt of frame {frame} must be a string, got {prompt!r}")
        if frame in frames:
            raise InputError(f"{what}: frame {frame} is given twice")
        frames[frame] = prompt
    return dict(sorted(frames.items()))


def compose(prompt: str, head: str = "", tail: str = "") -> str:
    """`head,prompt,tail`, as prompt-travel writes a keyframe's prompt (an empty head or tail is left out)."""
    if head:
        prompt = f"{head},{prompt}"
    if tail:
        prompt = f"{prompt},{tail}"
    return prompt


def check_fixed_ratio(fixed_ratio: object) -> None:
    """One line unless `fixed_ratio` is a number from 0 to 1 (`held_keyframes`)."""
    if isinstance(fixed_ratio, bool) or not isinstance(fixed_ratio, (int, float)) or not 0 <= fixed_ratio <= 1:
        raise InputError(f"prompt_fixed_ratio must be a number from 0 to 1, got {fixed_ratio!r}")


def held_prompt_map(
    prompt_map: Mapping[int, str], head: str, tail: str, fixed_ratio: float, loop_length: int | None = None
) -> dict[int, str]:
    """A prompt map as prompt-travel draws it: `head` and `tail` joined to each keyframe (`compose`), each held for
    `fixed_ratio` of its gap (`held_keyframes`)."""
    return held_keyframes({k: compose(p, head, tail) for k, p in prompt_map.items()}, fixed_ratio, loop_length)


def held_keyframes(frames: Mapping[int, T], fixed_ratio: float, loop_length: int | None = None) -> dict[int, T]:
    """Keyframes with each prompt held for `fixed_ratio` of the gap to the next keyframe before the text travels on,
    as prompt-travel's `prompt_fixed_ratio` holds it: between keyframes k0 < k1 a keyframe of k0's prompt is added at
    k0 + round((k1 − k0)·ratio), one frame short of k1 at most (0: travel across the whole gap, the keyframes as
    given; 1: hold until the frame before the next keyframe). `loop_length`: the clip's frames when the keyframes go
    round (`interpolate`'s `loop`); the last keyframe is then held the same way towards that length."""
    check_fixed_ratio(fixed_ratio)
    held = dict(frames)
    order = sorted(frames)
    ends = order[1:] + ([loop_length] if loop_length is not None and loop_length > order[-1] else [])
    for k0, k1 in zip(order, ends):
        hold = min(k0 + round((k1 - k0) * fixed_ratio), k1 - 1)
        if hold != k0:
            held[hold] = frames[k0]
    return dict(sorted(held.items()))


@dataclass
class PromptTravel:
    """The text of one video whose prompt changes over its frames."""

    prompts: Mapping[int, str]
    """Keyframes, frame → prompt (keys may be decimal strings, as JSON writes them); kept sorted by frame."""
    negative_prompts: Mapping[int, str] | str | None = None
    """One negative prompt for every frame, or keyframes of their own; None is the empty prompt."""
    interpolation: str = "linear"
    """How frames between keyframes get their embedding: "linear", "slerp" or "none" (the latest keyframe's)."""
    num_frames: int | None = None
    """The clip's length when known: every keyframe must lie in it."""
    loop: bool = False
    """Whether the keyframes go round: the frames after the last travel on towards the first (module docstring)."""

    def __post_init__(self) -> None:
        check_interpolation(self.interpolation)
        self.prompts = keyframes(self.prompts, "prompt")
        negatives = self.negative_prompts
        if negatives is None or isinstance(negatives, str):
            self.negative_prompts = {0: negatives or ""}
        else:
            self.negative_prompts = keyframes(negatives, "negative prompt")
        if self.num_frames is not None:
            for what, frames in (("prompt", self.prompts), ("negative prompt", self.negative_prompts)):
                last = max(frames)
                if last >= self.num_frames:
                    raise InputError(
                        f"{what} keyframe {last} is beyond the clip's last frame, {self.num_frames - 1} "
                        "(frames count from 0)"
                    )

    @property
    def texts(self) -> list[str]:
        """Every keyframe's prompt, in frame order."""
        return list(self.prompts.values())

    @property
    def constant(self) -> bool:
        """Whether every frame has the same prompt and the same negative prompt (then the text is per video)."""
        return len(set(self.prompts.values())) == 1 and len(set(self.negative_prompts.values())) == 1

    @property
    def batch(self) -> tuple[list[str], list[str]]:
        """(prompts, negative prompts) of the one video, as `prompt_batch` gives them: its first keyframes'."""
        return [self.texts[0]], [next(iter(self.negative_prompts.values()))]


def check_interpolation(mode: str) -> None:
    if mode not in INTERPOLATIONS:
        raise InputError(f"prompt interpolation {mode!r}: choose one of {', '.join(INTERPOLATIONS)}")


TEXT_KEYFRAME = re.compile(r"^(\d+): (.+)$")
"""A keyframe line of the A1111 AnimateDiff extension's prompt travel: `8: open mouth`."""


def text_keyframes(prompt: str) -> dict[int, str] | None:
    """The keyframes of a prompt written in the A1111 AnimateDiff extension's prompt-travel form (head lines, then
    `N: prompt` lines, then tail lines), each `head, prompt, tail` as that extension composes it; None for a prompt
    without keyframe lines."""
    head: list[str] = []
    frames: dict[int, str] = {}
    tail: list[str] = []
    for line in prompt.strip().split("\n"):
        if not frames and not tail and not re.match(r"^\d+:", line):
            head.append(line)
        elif not tail and (match := TEXT_KEYFRAME.match(line)):
            frames[int(match[1])] = match[2]
        else:
            tail.append(line)
    if not frames:
        return None
    head_text, tail_text = ", ".join(head), ", ".join(tail)
    return {frame: f"{head_text}, {text}, {tail_text}" for frame, text in sorted(frames.items())}


def prompt_travel(
    prompt: object, negative_prompt: object, interpolation: str, num_frames: int, loop: bool = False
) -> PromptTravel | None:
    """The prompt travel a pipeline call asks for (a dict as `prompt` or `negative_prompt`, or a prompt in the A1111
    extension's text form, `text_keyframes`), its keyframes going round with `loop`, or None for plain prompts;
    checks `interpolation` either way."""
    check_interpolation(interpolation)
    if isinstance(prompt, str) and (frames := text_keyframes(prompt)) is not None:
        prompt = frames
    if not isinstance(prompt, Mapping) and not isinstance(negative_prompt, Mapping):
        return None
    if isinstance(prompt, str):
        prompt = {0: prompt}
    if not isinstance(prompt, Mapping):
        raise InputError("keyframed negative prompts need a single prompt (a string or a frame → prompt dict)")
    return PromptTravel(prompt, negative_prompt, interpolation, num_frames, loop)  # type: ignore[arg-type]


def lerp(start: torch.Tensor, end: torch.Tensor, t: float) -> torch.Tensor:
    """(1 − t)·start + t·end, written as diffusers' `_lerp` writes it (so the two agree to the bit)."""
    return (1 - t) * start + t * end


def slerp(start: torch.Tensor, end: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of two whole embeddings (one angle between them), linear where nearly parallel."""
    cos = (start * end).sum() / (start.norm() * end.norm())
    if cos.abs() > PARALLEL:
        return lerp(start, end, t)
    omega = cos.clamp(-1, 1).acos()
    return (((1 - t) * omega).sin() * start + (t * omega).sin() * end) / omega.sin()


def interpolate(
    embeddings: Mapping[int, torch.Tensor], num_frames: int, mode: str = "linear", loop: bool = False
) -> torch.Tensor:
    """Per-frame embeddings (num_frames, ...) from keyframe embeddings {frame: (...)}: a keyframe's own exactly, and
    between two keyframes by `mode`; before the first and after the last, the first's and the last's, or with `loop`
    between the last and the first around the clip (module docstring)."""
    check_interpolation(mode)
    frames = sorted(embeddings)
    mix = {"linear": lerp, "slerp": slerp}.get(mode)
    out = []
    for j in range(num_frames):
        later = [k for k in frames if k > j]
        earlier = [k for k in frames if k <= j]
        if earlier and earlier[-1] == j:
            out.append(embeddings[j])
            continue
        if loop and len(frames) > 1 and not (earlier and later):  # between the last and the first, around the clip
            k0, k1 = frames[-1], frames[0]
            gone, left = (j - k0) % num_frames, (k1 - j) % num_frames
        elif not earlier or not later:
            out.append(embeddings[earlier[-1] if earlier else frames[0]])
            continue
        else:
            k0, k1 = earlier[-1], later[0]
            gone, left = j - k0, k1 - j
        out.append(embeddings[k0] if mix is None else mix(embeddings[k0], embeddings[k1], gone / (gone + left)))
    return torch.stack(out)


def load_prompt_map(path: str | os.PathLike) -> dict[int, str]:
    """A YAML or JSON file holding a mapping frame → prompt."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"prompt map not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        reason = str(err).replace("\n", " ")
        raise InputError(f"prompt map {path}: not readable as YAML or JSON ({reason})") from None
    return keyframes(raw, f"prompt map {path}")


def prompt_argument(prompt: str | None, prompt_map: str | os.PathLike | None, num_frames: int) -> str | dict[int, str]:
    """What `generate` draws: --prompt (its keyframes where it is written in the A1111 extension's prompt-travel
    lines, `text_keyframes`), or the keyframes of --prompt-map with --prompt, if given, put before every keyframe's
    prompt (prompt-travel's head prompt); keyframes are checked against the clip's length before any model loads."""
    if prompt_map is not None:
        frames = {k: compose(p, prompt or "") for k, p in load_prompt_map(prompt_map).items()}
    elif prompt is None:
        raise InputError("give --prompt (what to animate) or --prompt-map (frame → prompt keyframes)")
    elif (frames := text_keyframes(prompt)) is None:
        return prompt
    PromptTravel(frames, num_frames=num_frames if num_frames >= 1 else None)  # the pipeline names a bad length
    return frames
