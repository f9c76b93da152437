"""`generate`'s options on how the prompts are read: SDXL's second text, A1111's or ComfyUI's weights, long prompts
in chunks, A1111's prompt editing and composable prompts (AND)."""

from __future__ import annotations

import argparse

from animatediff.errors import InputError


def add_text_args(p: argparse.ArgumentParser) -> None:
    """How the prompts are read (`pipeline/text.py` and the modules it reads with)."""
    p.add_argument(
        "--prompt-2",
        default=None,
        help="SDXL: what its second text encoder (OpenCLIP bigG) reads instead of --prompt, as diffusers' prompt_2",
    )
    p.add_argument(
        "--negative-prompt-2",
        default=None,
        help="SDXL: the second text encoder's negative prompt instead of --negative-prompt (negative_prompt_2)",
    )
    p.add_argument(
        "--prompt-weighting",
        choices=["none", "a1111", "comfy"],
        default="none",
        help="a1111: read A1111's emphasis in the prompts, (words) ×1.1, [words] ÷1.1, (words:1.5); comfy: "
        "ComfyUI's prompt weights, (words) ×1.1, (words:1.5), pushed from the empty prompt; none: brackets are "
        "words, as the official code and diffusers read them",
    )
    p.add_argument(
        "--long-prompts",
        choices=["truncate", "chunks"],
        default="truncate",
        help="chunks: read a prompt longer than CLIP's 75 tokens in chunks of 75, as A1111 does (BREAK ends a chunk); "
        "truncate: cut it there, as the official code and diffusers do",
    )
    p.add_argument(
        "--prompt-editing",
        action="store_true",
        help="read A1111's prompt editing: [from:to:when] switches from one text to the other after step when "
        "(0.5: half the steps), [a|b] alternates every step; without it they are words, as the official code and "
        "diffusers read them",
    )
    p.add_argument(
        "--prompt-and",
        action="store_true",
        help="read A1111's composable prompts: 'a castle AND snow falling :0.8' guides with each part at its weight "
        "(a trailing :number; 1 unless given), one more prediction per part each step; without it AND is a word, as "
        "the official code and diffusers read it",
    )


def check_text_args(args: argparse.Namespace, prompt: str | dict[int, str]) -> None:
    """What the text options do not go with (`prompt`: the prompt as read, keyframes or not), in one line before any
    model loads."""
    from animatediff.prompt_and import composed_parts

    if args.prompt_and and composed_parts(prompt) is not None and (args.region or args.prompt_editing):
        raise InputError("--prompt-and's AND parts are read without --region and --prompt-editing; use one of them")
