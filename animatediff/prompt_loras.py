"""LoRAs named in a prompt as A1111 names them: `<lora:NAME:WEIGHT>` (`<lora:NAME>`: weight 1).

A1111 (and its AnimateDiff extension, which applies MotionLoRAs the same way) takes such a tag out of the prompt's
text and merges the LoRA file called NAME from its LoRA folder at that weight. Here the tags of a run's prompts are
read the same way (`lora_tags`, `without_lora_tags`), NAME is found in the folders given (`find_lora`: a weights
file whose name without its extension is NAME, in the folder or below it), and the file is merged as the LoRA it
is: an image LoRA, or a MotionLoRA when every layer is on a motion module (kind "auto", `formats.motion_lora`).

A tag applies to every video drawn with its prompt (every keyframe of a prompt travel, as A1111 applies it to the
whole batch). One weight per tag: A1111's second weight (for the UNet apart from the text encoder) is refused in one
line, and so is one NAME at two weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from animatediff.errors import InputError, InputNotFound
from animatediff.formats.state_dicts import PICKLE_SUFFIXES

LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?(?::([^>]*))?>")
"""`<lora:NAME>`, `<lora:NAME:WEIGHT>`, and A1111's `<lora:NAME:TE:UNET>` (refused: one weight here)."""
LORA_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


def lora_tags(texts: Iterable[str]) -> dict[str, float]:
    """{NAME: weight} of the tags in `texts`, in the order first written."""
    tags: dict[str, float] = {}
    for text in texts:
        for match in LORA_TAG.finditer(text):
            name, weight, extra = match[1].strip(), match[2], match[3]
            try:
                value = 1.0 if weight is None or not weight.strip() else float(weight)
            except ValueError:
                raise InputError(f"{match[0]}: the weight must be a number") from None
            if extra is not None and extra.strip() and extra.strip() != (weight or "").strip():
                raise InputError(f"{match[0]}: one weight per LoRA here (not a second one for the UNet)")
            if tags.get(name, value) != value:
                raise InputError(f"<lora:{name}> is written at two weights ({tags[name]:g} and {value:g})")
            tags[name] = value
    return tags


def without_lora_tags(text: str) -> str:
    """`text` with its LoRA tags taken out, as A1111 reads the rest."""
    return LORA_TAG.sub("", text)


def prompt_without_lora_tags(prompt: str | Mapping[int, str]) -> str | dict[int, str]:
    """A prompt, or each keyframe's of a prompt travel, without its LoRA tags."""
    if isinstance(prompt, str):
        return without_lora_tags(prompt)
    return {frame: without_lora_tags(text) for frame, text in prompt.items()}


def prompt_texts(prompt: str | Mapping[int, str]) -> list[str]:
    return [prompt] if isinstance(prompt, str) else list(prompt.values())


def find_lora(name: str, folders: Sequence[str | os.PathLike]) -> Path:
    """The weights file NAME (without its extension) in `folders` (each searched itself first, then below);
    one line naming the folders when there is none."""
    for folder in map(Path, folders):
        for pattern in ("*", "**/*"):
            for path in sorted(folder.glob(pattern)):
                if path.is_file() and path.stem == name and path.suffix.lower() in LORA_SUFFIXES:
                    return path
    where = ", ".join(map(str, folders)) or "no LoRA folder (give one: --lora-dir)"
    raise InputNotFound(f"<lora:{name}>: no LoRA file named {name} in {where}")


def tagged_loras(
    prompts: Iterable[str | Mapping[int, str]], folders: Sequence[str | os.PathLike]
) -> list[tuple[str, str, float]]:
    """(kind "auto", path, weight) of every LoRA the prompts' tags name, found in `folders`."""
    tags = lora_tags(text for prompt in prompts for text in prompt_texts(prompt))
    return [("auto", str(find_lora(name, folders)), weight) for name, weight in tags.items()]
