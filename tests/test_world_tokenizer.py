import json
from collections import Counter

import pytest
from transformers import CLIPTokenizer

from animatediff.world.layout import EMBEDDED
from animatediff.world.scenes import FULL_WORLD
from animatediff.world.tokenizer import (
    END,
    START,
    byte_alphabet,
    save_clip_tokenizer,
    train_bpe,
    world_captions,
    world_tokenizer,
    write_clip_files,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world_tokenizer")
    world_tokenizer(folder)
    return folder


def test_every_caption_word_is_one_token_and_round_trips(folder):
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    words = FULL_WORLD.words()
    assert {"star", "outlined", "moving", "left", "background"} <= words
    for word in words:
        assert tokenizer.tokenize(word) == [word + "</w>"]
    for caption in world_captions(FULL_WORLD)[::37]:
        ids = tokenizer(caption).input_ids
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert len(ids) == len(caption.split()) + 2
        assert tokenizer.decode(ids, skip_special_tokens=True) == caption


def test_clip_files_have_clips_layout(folder):
    vocab = json.loads((folder / "vocab.json").read_text())
    symbols = list(byte_alphabet().values())
    assert len(symbols) == 256
    # Bytes, bytes with the word-end mark, merges, then the two special tokens — CLIP's order.
    assert [vocab[s] for s in symbols] == list(range(256))
    assert [vocab[s + "</w>"] for s in symbols] == list(range(256, 512))
    merges = (folder / "merges.txt").read_text().splitlines()
    assert merges[0].startswith("#version")
    assert vocab[START] == len(vocab) - 2 and vocab[END] == len(vocab) - 1
    assert len(vocab) == 512 + len(merges) - 1 + 2
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    assert tokenizer.model_max_length == 77 and tokenizer.pad_token == END
    padded = tokenizer("a red circle", padding="max_length", max_length=77).input_ids
    assert len(padded) == 77 and padded[-1] == vocab[END]


def test_unseen_words_still_tokenize_by_characters(folder):
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    tokens = tokenizer.tokenize("a zebra!")
    assert tokens[0] == "a</w>" and "".join(tokens[1:]).replace("</w>", "") == "zebra!"


def test_write_clip_files_reproduces_the_trained_files(folder, tmp_path):
    write_clip_files(CLIPTokenizer.from_pretrained(folder), tmp_path)
    assert (tmp_path / "vocab.json").read_text() == (folder / "vocab.json").read_text()
    assert (tmp_path / "merges.txt").read_text() == (folder / "merges.txt").read_text()


def test_the_world_tokenizer_rebuilds_the_shipped_one(folder):
    """The first stage of a rebuild from scratch gives back the embedded model's tokenizer, byte for byte."""
    shipped = EMBEDDED / "base" / "tokenizer"
    for name in ("vocab.json", "merges.txt"):
        assert (folder / name).read_bytes() == (shipped / name).read_bytes()


def test_bpe_merges_most_frequent_pairs_first():
    merges = train_bpe(Counter({"aab": 5, "ab": 3}))
    assert merges[0] == ("a", "b</w>")  # 8 occurrences, more than ("a", "a") with 5
    assert train_bpe(Counter({"abc": 1}), num_merges=1) == [("a", "b")]


def test_empty_captions_are_refused(tmp_path):
    with pytest.raises(ValueError, match="captions are empty"):
        save_clip_tokenizer(tmp_path, ["", "  "])
