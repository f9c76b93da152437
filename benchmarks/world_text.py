"""How the text is read, measured on the embedded world: clip skip (the layer the prompt is taken from), A1111's
prompt weights (`--prompt-weighting a1111`) on the caption's motion words, and long prompts (`--long-prompts`).

Each row draws the same prompts and seeds and is measured as `animatediff world eval` measures (`world.metrics`):
motion accuracy (the tracked centroid or area moves as captioned), temporal consistency and colour accuracy, over
`world.evaluate.evaluation_prompts`. The world's text encoder has two layers and its base was trained on the last
one, as SD1.5 was. The weighted rows write the caption's motion words as `(moving right:W)`: weight 1 is the plain
caption, below 1 the motion words count for less, above 1 for more (the prompt's mean kept, as A1111 keeps it).

    python benchmarks/world_text.py                  # 6 rows × 16 clips: a few minutes on 2 CPU cores
    python benchmarks/world_text.py --prompts 6 --seeds 1
    python benchmarks/world_text.py --only colour    # the colour word at weights 0, 0.5, 1, 2
    python benchmarks/world_text.py --only long      # the caption after or before 99 tokens of quality tags
    python benchmarks/world_text.py --only scene     # the caption after its scene said 9 times
    python benchmarks/world_text.py --only colour --weighting comfy  # the colour word under ComfyUI's weights
    python benchmarks/world_text.py --only embedding # the motion words as a textual-inversion embedding
    python benchmarks/world_text.py --only loras     # the outlined look and the motions as <lora:NAME:1> tags

The colour table writes the caption's colour word as `(red:W)` and counts how often the object keeps the captioned
colour, and how far the frames move from the plain caption's.

The long-prompt table puts the caption after or before `FILLER`, the quality tags prompts copied from model pages
start with (99 tokens here, words the world never saw), and reads the prompt cut at CLIP's 75 tokens (the default)
or in A1111's chunks of 75. The scene table writes the caption's scene without its motion words nine times
(72 tokens of words the world knows) before the caption: cut at 75 tokens the motion words are lost.

The embedding table writes each caption's motion words as one new word (qxv0, qxv1, …) whose embedding file
holds the text encoder's own token vectors of those words: not loaded, the word is letters the world never saw;
loaded (`--embedding`), it is the motion words again.

The LoRA-tag table asks for the world's personalized looks and motions with A1111's `<lora:NAME:WEIGHT>` in the
prompt (`--lora-dir`): the outlined look's captions with and without `<lora:outlined_lora:1>`, and the captions
without their motion words with and without `<lora:MOTION:1>` (the shipped MotionLoRA of the captioned motion).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from world_setup import clip_options, embedded_pipeline

from animatediff.pipeline import AnimationPipeline
from animatediff.world.evaluate import evaluate_row, evaluation_prompts
from animatediff.world.layout import EMBEDDED
from animatediff.world.metrics import colour_correct, track

MOTION_PHRASES = ("moving left", "moving right", "moving up", "moving down", "bouncing", "growing", "shrinking",
                  "rotating")  # fmt: skip
MOTION_WORDS = re.compile("|".join(MOTION_PHRASES))
FILLER = (
    "masterpiece, best quality, highly detailed, sharp focus, professional, 8k, cinematic lighting, intricate details, "
    "trending on artstation"
)


def weighted_motion(weight: float) -> Callable[[str], str]:
    return lambda caption: MOTION_WORDS.sub(lambda m: f"({m[0]}:{weight})", caption)


def plain(caption: str) -> str:
    return caption


ROWS = (
    ("clip skip 1: the last of 2 layers (the default)", {}, plain),
    ("clip skip 2: the first of 2 layers", {"clip_skip": 2}, plain),
    ("motion words at weight 0", {"prompt_weighting": "a1111"}, weighted_motion(0.0)),
    ("motion words at weight 0.5", {"prompt_weighting": "a1111"}, weighted_motion(0.5)),
    ("motion words at weight 1 (the plain caption)", {"prompt_weighting": "a1111"}, weighted_motion(1.0)),
    ("motion words at weight 1.5", {"prompt_weighting": "a1111"}, weighted_motion(1.5)),
)
"""(label, the pipeline call's text settings, the caption → the prompt written)."""
LONG_ROWS = (
    ("the caption alone (9 tokens)", {}, plain),
    ("quality tags, then the caption: truncate", {}, lambda caption: f"{FILLER}, {caption}"),
    ("quality tags, then the caption: chunks", {"long_prompts": "chunks"}, lambda caption: f"{FILLER}, {caption}"),
    ("the caption, then quality tags: truncate", {}, lambda caption: f"{caption}, {FILLER}"),
    ("the caption, then quality tags: chunks", {"long_prompts": "chunks"}, lambda caption: f"{caption}, {FILLER}"),
    ("quality tags BREAK the caption: chunks", {"long_prompts": "chunks"}, lambda caption: f"{FILLER} BREAK {caption}"),
)
"""Long prompts: the caption placed after or before the quality tags, read cut or in chunks."""


def after_its_scene(caption: str) -> str:
    """The caption's scene without its motion, nine times, then the caption: its motion words past the 75th token."""
    scene = " ".join(MOTION_WORDS.sub("", caption).split())
    return ", ".join([scene] * 9) + ", " + caption


SCENE_ROWS = (
    ("the caption alone", {}, plain),
    ("its scene 9 times, then the caption: truncate", {}, after_its_scene),
    ("its scene 9 times, then the caption: chunks", {"long_prompts": "chunks"}, after_its_scene),
    ("its scene 9 times BREAK the caption: chunks", {"long_prompts": "chunks"},
     lambda caption: after_its_scene(caption).rsplit(", ", 1)[0] + " BREAK " + caption),
)  # fmt: skip
"""Long prompts of the world's own words: the motion words past the 75th token."""


def main() -> None:
    parser = clip_options(__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=["rows", "colour", "long", "scene", "embedding", "loras"],
        default=None,
        help="one table; default: all",
    )
    parser.add_argument(
        "--weighting", choices=["a1111", "comfy"], default="a1111", help="how the colour table reads its weights"
    )
    args = parser.parse_args()
    pipe = embedded_pipeline(args.threads, quiet=True)
    prompts = evaluation_prompts(args.prompts)
    seeds = list(range(args.seeds))
    clips = len(prompts) * len(seeds)

    shape = f"{clips} clips per row ({len(prompts)} prompts × {len(seeds)} seeds), {args.frames} frames of 32×32"
    shape += f", {args.steps} steps, {args.threads} CPU threads."

    def table(title: str | None, rows: tuple) -> None:
        if title is not None:
            print(f"\n## {title}\n\n{shape}\n")
            print("| row | motion accuracy | consistency | colour accuracy | s/clip |")
            print("|---|---|---|---|---|")
        for label, settings, write in rows:

            def generate(caption: str, seed: int, settings: dict = settings, write: Callable = write):  # noqa: ANN202
                call = dict(num_frames=args.frames, num_inference_steps=args.steps, progress=False, **settings)
                return pipe(write(caption), seed=seed, **call)[0]

            start = time.perf_counter()
            result = evaluate_row(label, generate, prompts, seeds)
            seconds = (time.perf_counter() - start) / clips
            motion, colour = round(result.motion_accuracy * clips), round(result.colour_accuracy * clips)
            print(f"| {label} | {motion}/{clips} | {result.consistency:.2f} | {colour}/{clips} | {seconds:.1f} |")

    if args.only in (None, "rows"):
        table("How the text is read, on the embedded world", ROWS)
    if args.only in (None, "colour"):
        colour_weights(pipe, prompts, seeds, args.frames, args.steps, args.weighting)
    if args.only in (None, "long"):
        table("Long prompts (--long-prompts), on the embedded world", LONG_ROWS)
    if args.only in (None, "scene"):
        table("Long prompts of the world's words (--long-prompts), on the embedded world", SCENE_ROWS)
    if args.only in (None, "embedding"):
        with tempfile.TemporaryDirectory() as folder:
            files = motion_embeddings(pipe, Path(folder))

            def swap(caption: str) -> str:
                return MOTION_WORDS.sub(lambda m: Path(files[m[0]]).stem, caption)

            rows = (("the caption", {}, plain), ("motion words as a word not loaded", {}, swap))
            table("Textual-inversion embeddings (--embedding), on the embedded world", rows)
            for path in files.values():
                pipe.load_embedding(path)
            table(None, (("motion words as the loaded embedding of their tokens", {}, swap),))
    if args.only in (None, "loras"):
        lora_tags_table(pipe, args.prompts, seeds, args.frames, args.steps)


def lora_tags_table(pipe: AnimationPipeline, n: int, seeds: list[int], frames: int, steps: int) -> None:
    """Looks and motions asked for with `<lora:NAME:1>` tags, found in the world's folders as --lora-dir finds
    them, merged for each clip and taken out of its prompt."""
    from animatediff.prompt_loras import prompt_without_lora_tags, tagged_loras
    from animatediff.world.looks import load_look_classifier

    folders = [EMBEDDED / "personalized", EMBEDDED / "motion_loras"]
    looks = load_look_classifier(EMBEDDED / "look_classifier.safetensors")

    def generate(prompt: str, seed: int) -> np.ndarray:
        names = [pipe.add_lora(path, weight, kind) for kind, path, weight in tagged_loras([prompt], folders)]
        try:
            call = dict(num_frames=frames, num_inference_steps=steps, progress=False)
            return pipe(prompt_without_lora_tags(prompt), seed=seed, **call)[0]
        finally:
            for name in names:
                pipe.loras.remove(name)

    def still(caption: str) -> str:
        return " ".join(MOTION_WORDS.sub("", caption).split())

    def motion_tag(caption: str) -> str:
        return f"{still(caption)} <lora:{MOTION_WORDS.search(caption)[0].split()[-1]}:1>"

    rows = (
        ("the outlined look's captions", "style", plain),
        ("… + <lora:outlined_lora:1>", "style", lambda caption: f"{caption} <lora:outlined_lora:1>"),
        ("captions without their motion words", "base", still),
        ("… + <lora:MOTION:1> (the captioned motion's MotionLoRA)", "base", motion_tag),
    )
    clips = n * len(seeds)
    print("\n## LoRAs named in the prompt (<lora:NAME:WEIGHT>, --lora-dir), on the embedded world\n")
    print(f"{clips} clips per row\n")
    print("| row | motion accuracy | colour accuracy | look accuracy | consistency |")
    print("|---|---|---|---|---|")
    for label, look, write in rows:
        result = evaluate_row(label, lambda c, seed, write=write: generate(write(c), seed),
                              evaluation_prompts(n, look=look), seeds, looks)  # fmt: skip
        motion, colour = round(result.motion_accuracy * clips), round(result.colour_accuracy * clips)
        look_accuracy = f"{result.look_accuracy:.2f}"
        print(f"| {label} | {motion}/{clips} | {colour}/{clips} | {look_accuracy} | {result.consistency:.2f} |")


def motion_embeddings(pipe: AnimationPipeline, folder: Path) -> dict[str, Path]:
    """For each motion phrase, an A1111 embedding file named qxv0, qxv1, … (characters that spell no word the world
    knows, so that the word not loaded says nothing) holding the text encoder's token vectors of the phrase: the
    embedding that writes the phrase."""
    files = {}
    table = pipe.text_encoder.get_input_embeddings().weight.detach()
    for i, phrase in enumerate(MOTION_PHRASES):
        ids = pipe.tokenizer(phrase, add_special_tokens=False).input_ids
        files[phrase] = folder / f"qxv{i}.pt"
        torch.save({"string_to_param": {"*": table[ids].clone()}, "name": files[phrase].stem}, files[phrase])
    return files


def colour_weights(
    pipe: AnimationPipeline, prompts: list, seeds: list[int], frames: int, steps: int, weighting: str = "a1111"
) -> None:
    """The caption's colour word at weights 0 … 2 read by `weighting`: how often the object still has the captioned
    colour, and how far each clip's frames move from the plain caption's (mean absolute pixel difference, 0–1)."""
    print(f"\n## The colour word weighted (--prompt-weighting {weighting})\n")
    print("| colour word's weight | colour accuracy | mean change from the plain caption's frames | clips |")
    print("|---|---|---|---|")
    words = re.compile(r"\b(?:red|green|blue|yellow|purple)\b(?= (?:circle|square|triangle|cross))")

    def draw(text: str, seed: int) -> np.ndarray:
        call = dict(num_frames=frames, num_inference_steps=steps, prompt_weighting=weighting, progress=False)
        return pipe(text, seed=seed, **call)[0]

    plain = {(p.text, seed): draw(p.text, seed) for p in prompts for seed in seeds}
    for weight in (0.0, 0.5, 1.0, 2.0):
        hits, changes = 0, []
        for prompt in prompts:
            text = words.sub(lambda m, w=weight: f"({m[0]}:{w})", prompt.text, count=1)
            for seed in seeds:
                clip = draw(text, seed)
                hits += colour_correct(track(clip), prompt.colour)
                changes.append(float(np.abs(clip - plain[prompt.text, seed]).mean()))
        n = len(prompts) * len(seeds)
        print(f"| {weight} | {hits}/{n} | {np.mean(changes):.4f} | {n} |", flush=True)


if __name__ == "__main__":
    main()
