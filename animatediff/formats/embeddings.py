"""Textual-inversion embeddings (A1111's `embeddings/` files: EasyNegative, bad-hands-5, …): a word whose token
vectors a file holds, written in a prompt by the file's name.

Read (`read_embedding`, weights-only, nothing in the file runs):

- A1111's .pt (`string_to_param: {"*": (n, D)}`) and .safetensors (`emb_params: (n, D)`);
- diffusers' `learned_embeds` (.bin or .safetensors: one entry, `{token: (D,) or (n, D)}`);
- SDXL embeddings (`clip_l: (n, 768)` and `clip_g: (n, 1280)`), one set of vectors per text encoder.

Loaded (`load_embedding`) as diffusers' `load_textual_inversion` loads one: the word is added to the tokenizer (here
as a whole word only, case-insensitive as CLIP's text is), an embedding of n vectors as n tokens `word`, `word_1`, …,
`word_{n-1}`, and the text encoder's token-embedding matrix grows by those rows. The word is the file's name (as in
A1111) unless another is given. Writing the word in a prompt stands for all n vectors (`prompt_chunks` expands it).
Loading the same word again replaces its vectors; anything that does not fit the model is one line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import CLIPTextModel, CLIPTokenizer

from animatediff.errors import InputError
from animatediff.formats.state_dicts import read_state_dict

SDXL_KEYS = ("clip_l", "clip_g")
"""An SDXL embedding's vectors for the first (768 wide) and second (1280 wide) text encoder."""


def _matrix(value: object, path: Path) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim not in (1, 2) or value.numel() == 0:
        raise InputError(f"{path}: not a textual-inversion embedding (expected vectors (n, width))")
    return value.detach().float().reshape(-1, value.shape[-1])


def read_embedding(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The file's vectors: {"": (n, D)} for one text encoder, {"clip_l": …, "clip_g": …} for SDXL's two."""
    path = Path(path)
    entries, _ = read_state_dict(path)
    if any(k in entries for k in SDXL_KEYS):
        missing = [k for k in SDXL_KEYS if k not in entries]
        if missing:
            raise InputError(f"{path}: an SDXL embedding needs clip_l and clip_g; {missing[0]} is missing")
        return {k: _matrix(entries[k], path) for k in SDXL_KEYS}
    if isinstance(entries.get("string_to_param"), dict) and "*" in entries["string_to_param"]:
        return {"": _matrix(entries["string_to_param"]["*"], path)}  # A1111 .pt
    if "emb_params" in entries:
        return {"": _matrix(entries["emb_params"], path)}  # A1111 .safetensors
    tensors = [v for v in entries.values() if isinstance(v, torch.Tensor)]
    if len(entries) == 1 and len(tensors) == 1:
        return {"": _matrix(tensors[0], path)}  # diffusers' learned_embeds: {token: vectors}
    raise InputError(
        f"{path}: not a textual-inversion embedding (keys {', '.join(sorted(map(str, entries))[:5])}; expected "
        "A1111's string_to_param or emb_params, diffusers' one {token: vectors}, or SDXL's clip_l and clip_g)"
    )


def embedding_family(path: str | os.PathLike) -> str | None:
    """'sdxl' for an embedding with clip_l and clip_g, 'sd1' for one set of vectors, None for a file that is not a
    readable embedding."""
    try:
        return "sd1" if "" in read_embedding(path) else "sdxl"
    except InputError:
        return None


def embedding_word(path: str | os.PathLike, word: str | None = None) -> str:
    """The word a prompt writes for the embedding in `path`: `word`, else the file's name without its extension."""
    word = Path(path).stem if word is None else word
    if not word or any(c.isspace() for c in word) or any(c in word for c in "()[]:,\\"):
        raise InputError(f"embedding word {word!r}: one word without spaces, brackets, colons or commas")
    return word


def check_embedding_file(path: str | os.PathLike) -> str:
    """Read the embedding file (it is small) and check its word, before any model loads; returns the word."""
    word = embedding_word(path)
    read_embedding(path)
    return word


def add_embedding(
    tokenizers: Sequence[CLIPTokenizer],
    text_encoders: Sequence[CLIPTextModel],
    vectors: Sequence[torch.Tensor],
    word: str,
) -> None:
    """Add `word` to each tokenizer with its encoder's vectors (n, D): n tokens `word`, `word_1`, …; a word added
    before takes the new vectors if it has as many."""
    if len({len(m) for m in vectors}) > 1:
        raise InputError(f"embedding {word!r} has a different number of vectors for each text encoder")
    names = [word, *(f"{word}_{i}" for i in range(1, len(vectors[0])))]
    for tokenizer, encoder, matrix in zip(tokenizers, text_encoders, vectors, strict=True):
        table = encoder.get_input_embeddings()
        if matrix.shape[-1] != table.weight.shape[-1]:
            raise InputError(
                f"embedding {word!r} is {matrix.shape[-1]} wide; this model's text encoder takes "
                f"{table.weight.shape[-1]} (an embedding for another model family?)"
            )
        added = tokenizer.added_tokens_encoder
        if word in added:
            if f"{word}_{len(names)}" in added or any(name not in added for name in names):
                raise InputError(f"embedding {word!r} is already loaded with another number of vectors")
        else:
            if word.lower() in tokenizer.get_vocab() or f"{word.lower()}</w>" in tokenizer.get_vocab():
                raise InputError(f"embedding word {word!r} is a word of the tokenizer already: rename the file")
            tokenizer.add_tokens([AddedToken(name, single_word=True) for name in names])
            if len(tokenizer) > table.weight.shape[0]:
                encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # the rows are set below
                table = encoder.get_input_embeddings()
        rows = tokenizer.convert_tokens_to_ids(names)
        with torch.no_grad():
            table.weight[rows] = matrix.to(table.weight)


def load_embedding(pipe: object, path: str | os.PathLike, word: str | None = None) -> str:
    """Load the embedding in `path` into `pipe`'s text encoder(s) (SD1.x: one set of vectors; SDXL: clip_l and
    clip_g); returns the word that writes it."""
    word = embedding_word(path, word)
    vectors = read_embedding(path)
    tokenizers = [pipe.tokenizer]
    encoders = [pipe.text_encoder]
    if getattr(pipe, "text_encoder_2", None) is not None:
        if "" in vectors:
            raise InputError(f"{path}: an embedding for one text encoder; this SDXL model needs clip_l and clip_g")
        tokenizers.append(pipe.tokenizer_2)
        encoders.append(pipe.text_encoder_2)
        add_embedding(tokenizers, encoders, [vectors["clip_l"], vectors["clip_g"]], word)
        return word
    if "" not in vectors:
        raise InputError(f"{path}: an SDXL embedding (clip_l and clip_g); this is an SD1.x model")
    add_embedding(tokenizers, encoders, [vectors[""]], word)
    return word
