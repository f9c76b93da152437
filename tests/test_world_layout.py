"""What a world base states about itself: the guidance it samples at, its words, its size."""

import json
import shutil

from animatediff.base_model import STATEMENT_FILE, read_traits
from animatediff.world.layout import EMBEDDED, WORLD_GUIDANCE_SCALE, write_statement
from animatediff.world.scenes import FULL_WORLD
from animatediff.world.tokenizer import world_tokenizer


def test_the_embedded_base_states_what_a_build_writes(tmp_path):
    base = tmp_path / "base"
    shutil.copytree(EMBEDDED / "base", base, ignore=shutil.ignore_patterns("*.safetensors"))
    write_statement(base)
    assert json.loads((base / STATEMENT_FILE).read_text()) == json.loads(
        (EMBEDDED / "base" / STATEMENT_FILE).read_text()
    )
    traits = read_traits(EMBEDDED / "base")
    assert traits.guidance_scale == WORLD_GUIDANCE_SCALE and traits.size_range == (32, 32)
    assert traits.vocabulary == FULL_WORLD.words()


def test_every_stated_word_is_one_token_of_the_world_tokenizer(tmp_path):
    tokenizer = world_tokenizer(tmp_path / "tokenizer")
    for word in read_traits(EMBEDDED / "base").vocabulary:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    assert len(tokenizer("corgi", add_special_tokens=False).input_ids) > 1  # an unknown word falls apart
