"""A CLIP-format BPE tokenizer trained on the world's captions, loadable with transformers' `CLIPTokenizer`.

CLIP's files (vocab.json + merges.txt) hold byte-level BPE over the GPT-2 byte alphabet, with the last symbol of
each word marked by the suffix `</w>`. The vocabulary is: the 256 byte symbols, the same 256 with `</w>`, one
entry per merge in order, then `<|startoftext|>` and `<|endoftext|>`. The `tokenizers` trainer writes its own
vocabulary order, so this module runs the (small) merge loop itself and writes CLIP's layout directly.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from transformers import CLIPTokenizer

from animatediff.world.scenes import FULL_WORLD, SceneSpec, WorldConfig

END_OF_WORD = "</w>"
START, END = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77  # CLIP's context, which SD1.x pipelines pad every prompt to
# CLIP's pre-tokenizer, restricted to what captions hold: runs of letters, single digits, runs of punctuation.
_WORD = re.compile(r"[^\W\d_]+|\d|[^\s\w]+")


def byte_alphabet() -> dict[int, str]:
    """GPT-2's byte → printable-character table, the alphabet CLIP's BPE works on."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for i, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + i)
    return dict(sorted(table.items()))


def caption_words(text: str) -> list[str]:
    """A caption split the way CLIP splits it (lower-cased), each word in the byte alphabet."""
    table = byte_alphabet()
    return ["".join(table[b] for b in word.encode("utf-8")) for word in _WORD.findall(text.lower())]


def train_bpe(word_counts: Counter[str], num_merges: int | None = None) -> list[tuple[str, str]]:
    """Merges learned greedily by pair frequency (ties: the alphabetically first pair).

    With `num_merges` None, merging goes on until every word is a single symbol, so each caption word becomes
    one token — the natural choice for a closed vocabulary of a few dozen words.
    """
    # Each word as its symbols, the last carrying the end-of-word mark.
    words = {w: (*w[:-1], w[-1] + END_OF_WORD) for w in word_counts if w}
    merges: list[tuple[str, str]] = []
    while num_merges is None or len(merges) < num_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for w, symbols in words.items():
            for pair in itertools.pairwise(symbols):
                pairs[pair] += word_counts[w]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w, symbols in words.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            words[w] = tuple(out)
    return merges


def clip_vocabulary(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocabulary order: bytes, bytes with `</w>`, merge results, then start and end tokens."""
    symbols = list(byte_alphabet().values())
    entries = symbols + [s + END_OF_WORD for s in symbols] + [a + b for a, b in merges] + [START, END]
    vocab: dict[str, int] = {}
    for entry in entries:
        vocab.setdefault(entry, len(vocab))
    return vocab


def save_clip_tokenizer(
    folder: str | os.PathLike, captions: Iterable[str], num_merges: int | None = None
) -> CLIPTokenizer:
    """Train BPE on `captions`, write CLIP's files into `folder`, and load them back as a CLIPTokenizer."""
    counts = Counter(word for caption in captions for word in caption_words(caption))
    if not counts:
        raise ValueError("no words to train a tokenizer on: the captions are empty")
    merges = train_bpe(counts, num_merges)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(clip_vocabulary(merges), ensure_ascii=False))
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        model_max_length=MAX_LENGTH,
        bos_token=START,
        eos_token=END,
        pad_token=END,
        unk_token=END,
    )
    # Adds tokenizer_config.json and friends, so `CLIPTokenizer.from_pretrained(folder)` restores the same settings.
    tokenizer.save_pretrained(folder)
    return tokenizer


def write_clip_files(tokenizer: CLIPTokenizer, folder: str | os.PathLike) -> None:
    """Write `tokenizer`'s vocab.json and merges.txt into `folder`, as SD1.5's tokenizer/ holds them.

    transformers 5 saves only tokenizer.json; older transformers and other SD tools read these two files.
    """
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if model.get("type") != "BPE" or model.get("end_of_word_suffix") != END_OF_WORD:
        raise ValueError("not a CLIP-style BPE tokenizer (BPE with '</w>' word ends)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = dict(sorted(model["vocab"].items(), key=lambda item: item[1]))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "merges.txt").write_text("\n".join(["#version: 0.2", *merges]) + "\n", encoding="utf-8")


def world_captions(world: WorldConfig) -> list[str]:
    """Every image and video caption `world` can produce (colour/background clashes included: harmless)."""
    captions = set()
    for shape, colour, background, texture, motion in itertools.product(
        world.shapes, world.colours, world.backgrounds, world.textures, world.motions
    ):
        spec = SceneSpec(shape, colour, background, texture, motion, amount=1.0)
        captions.add(spec.caption())
    return sorted(captions)


def world_tokenizer(folder: str | os.PathLike, world: WorldConfig = FULL_WORLD) -> CLIPTokenizer:
    """The tokenizer of the world: every caption word of the full world (personalization looks included)."""
    return save_clip_tokenizer(folder, world_captions(world))
