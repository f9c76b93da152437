"""Textual-inversion embeddings (`--embedding`, run key `embeddings`, the web app's embeddings/ folder): A1111's,
diffusers' and SDXL's files read weights-only, loaded as diffusers' `load_textual_inversion` loads them (the same
token ids, rows and frames), a multi-vector word standing for all its vectors, and bad files in one line."""

import json
import pickle
import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from animatediff.errors import InputError
from animatediff.formats.embeddings import embedding_family, read_embedding
from animatediff.models import inflate_unet
from animatediff.pipeline import AnimationPipeline
from animatediff.text_encoding import encode_prompts
from tests.tiny import official_scheduler, tiny_motion, tiny_text_encoder, tiny_tokenizer, tiny_unet, tiny_vae

ARGS = dict(num_frames=4, height=16, width=16, num_inference_steps=2, guidance_scale=7.5)


def own_pipeline(folder) -> AnimationPipeline:  # noqa: ANN001
    """A tiny pipeline with a tokenizer of its own (loading an embedding changes the tokenizer)."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(folder)
    unet = inflate_unet(tiny_unet(), tiny_motion("v2"))
    return AnimationPipeline(tokenizer, tiny_text_encoder(len(tokenizer)), tiny_vae(), unet, official_scheduler())


def vectors(n: int = 2, width: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


def a1111_pt(path, matrix: torch.Tensor):  # noqa: ANN001, ANN201
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": matrix}, "name": "inner", "step": 3}, path)
    return path


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("a1111.pt", lambda p, m: a1111_pt(p, m)),
        ("a1111.safetensors", lambda p, m: save_file({"emb_params": m}, p)),
        ("learned_embeds.bin", lambda p, m: torch.save({"<tok>": m}, p)),
        ("learned_embeds.safetensors", lambda p, m: save_file({"<tok>": m.contiguous()}, p)),
    ],
)
def test_every_format_reads_to_its_vectors(tmp_path, name, write):
    matrix = vectors()
    write(tmp_path / name, matrix)
    read = read_embedding(tmp_path / name)
    torch.testing.assert_close(read[""], matrix, rtol=0, atol=0)
    assert embedding_family(tmp_path / name) == "sd1"
    save_file({"clip_l": vectors(2, 32), "clip_g": vectors(2, 32, 1)}, tmp_path / "xl.safetensors")
    assert set(read_embedding(tmp_path / "xl.safetensors")) == {"clip_l", "clip_g"}
    assert embedding_family(tmp_path / "xl.safetensors") == "sdxl"


class Runs:
    def __reduce__(self):  # noqa: ANN204
        return (print, ("ran",))


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: p.write_bytes(pickle.dumps({"string_to_param": {"*": Runs()}})), "read with weights_only"),
        (lambda p: torch.save({"a": vectors(), "b": vectors()}, p), "not a textual-inversion embedding (keys a, b"),
        (lambda p: torch.save({"clip_l": vectors()}, p), "an SDXL embedding needs clip_l and clip_g; clip_g is"),
        (lambda p: torch.save({"emb_params": torch.zeros(2, 2, 2)}, p), "expected vectors (n, width)"),
    ],
)
def test_bad_files_are_one_line(tmp_path, write, message, capsys):
    path = tmp_path / "bad.pt"
    write(path)
    with pytest.raises(InputError, match=re.escape(message)):
        read_embedding(path)
    assert "ran" not in capsys.readouterr().out


def test_loading_matches_diffusers_load_textual_inversion(tmp_path, one_thread):
    from tests.diffusers_reference import diffusers_pipeline

    path = a1111_pt(tmp_path / "easyneg.pt", vectors(3))
    ours, theirs = own_pipeline(tmp_path / "ours"), own_pipeline(tmp_path / "theirs")
    reference = diffusers_pipeline(theirs)
    reference.load_textual_inversion(str(path), token="easyneg")
    assert ours.load_embedding(path) == "easyneg"
    for name in ("easyneg", "easyneg_1", "easyneg_2"):
        ours_id, their_id = ours.tokenizer.convert_tokens_to_ids(name), theirs.tokenizer.convert_tokens_to_ids(name)
        assert ours_id == their_id
        torch.testing.assert_close(
            ours.text_encoder.get_input_embeddings().weight[ours_id],
            theirs.text_encoder.get_input_embeddings().weight[their_id],
        )
    prompt = "a red circle, easyneg"
    generator = torch.Generator("cpu").manual_seed(3)
    expected = reference(prompt=prompt, negative_prompt="blurry", **ARGS, generator=generator, output_type="np")
    got = ours(prompt, "blurry", **ARGS, seed=3, progress=False)
    np.testing.assert_allclose(got, expected.frames, rtol=0, atol=1e-4)
    plain = own_pipeline(tmp_path / "plain")("a red circle, easyneg", "blurry", **ARGS, seed=3, progress=False)
    assert np.abs(got - plain).max() > 1e-3  # without the embedding the word is letters


def test_a_word_stands_for_all_its_vectors_and_only_as_a_whole_word(tmp_path):
    pipe = own_pipeline(tmp_path / "p")
    matrix = vectors(2)
    save_file({"emb_params": matrix}, tmp_path / "Goright.safetensors")
    assert pipe.load_embedding(tmp_path / "Goright.safetensors") == "Goright"
    tok, enc = pipe.tokenizer, pipe.text_encoder
    ids = tok.convert_tokens_to_ids(["Goright", "Goright_1"])
    with torch.no_grad():
        got = encode_prompts(tok, enc, ["a goright b"])  # case-insensitive, as CLIP reads text
        row = [tok.bos_token_id, *tok("a", add_special_tokens=False).input_ids, *ids]
        row += [*tok("b", add_special_tokens=False).input_ids, tok.eos_token_id]
        row += [tok.pad_token_id] * (77 - len(row))
        torch.testing.assert_close(got, enc(torch.tensor([row]))[0], rtol=0, atol=0)
        torch.testing.assert_close(enc.get_input_embeddings().weight[ids], matrix)
    assert ids[0] not in tok("agoright b", add_special_tokens=False).input_ids  # part of a word: letters
    save_file({"emb_params": -matrix}, tmp_path / "again.safetensors")
    pipe.load_embedding(tmp_path / "again.safetensors", "Goright")  # again: the new vectors
    torch.testing.assert_close(pipe.text_encoder.get_input_embeddings().weight[ids], -matrix)


@pytest.mark.parametrize(
    ("file", "word", "message"),
    [
        ({"emb_params": vectors(2, 16)}, None, "is 16 wide; this model's text encoder takes 32"),
        ({"clip_l": vectors(), "clip_g": vectors()}, None, "an SDXL embedding (clip_l and clip_g); this is an SD1.x"),
        ({"emb_params": vectors()}, "a", "embedding word 'a' is a word of the tokenizer already"),
        ({"emb_params": vectors()}, "two words", "one word without spaces"),
    ],
)
def test_what_does_not_fit_the_model_is_one_line(tmp_path, file, word, message):
    save_file(file, tmp_path / "e.safetensors")
    with pytest.raises(InputError, match=re.escape(message)):
        own_pipeline(tmp_path / "p").load_embedding(tmp_path / "e.safetensors", word)


def test_sdxl_takes_clip_l_and_clip_g_as_diffusers_does(tmp_path, one_thread):
    from tests.sdxl_tiny import tiny_sdxl_pipeline
    from tests.test_sdxl_pipeline import reference as sdxl_reference

    clip_l, clip_g = vectors(2, 32, 1), vectors(2, 32, 2)
    save_file({"clip_l": clip_l, "clip_g": clip_g}, tmp_path / "xlword.safetensors")
    ours, theirs = tiny_sdxl_pipeline(tmp_path / "ours"), tiny_sdxl_pipeline(tmp_path / "theirs")
    reference = sdxl_reference(theirs)
    reference.load_textual_inversion(clip_l, token="xlword", text_encoder=theirs.text_encoder,
                                     tokenizer=theirs.tokenizer)  # fmt: skip
    reference.load_textual_inversion(clip_g, token="xlword", text_encoder=theirs.text_encoder_2,
                                     tokenizer=theirs.tokenizer_2)  # fmt: skip
    ours.load_embedding(tmp_path / "xlword.safetensors")
    args = dict(ARGS, height=32, width=32)
    generator = torch.Generator("cpu").manual_seed(5)
    prompt = "a red circle xlword"
    expected = reference(prompt=prompt, negative_prompt="blurry", **args, generator=generator, output_type="np")
    np.testing.assert_allclose(ours(prompt, "blurry", **args, seed=5, progress=False), expected.frames, atol=1e-4)
    save_file({"emb_params": vectors()}, tmp_path / "plain.safetensors")
    with pytest.raises(InputError, match="an embedding for one text encoder; this SDXL model needs clip_l and"):
        ours.load_embedding(tmp_path / "plain.safetensors")


def test_generate_run_and_the_web_app_load_embeddings(tmp_path, monkeypatch, capsys, one_thread):
    """The CLI refuses a missing file before loading; a run entry's `embeddings` load once per base; the web app
    loads the embeddings folder's files that fit the base."""
    from animatediff.cli import main
    from animatediff.model_cache import ModelCache
    from animatediff.prompt_config import run_prompt_config
    from animatediff.ui.catalog import scan
    from animatediff.ui.job_models import fitting_embeddings
    from animatediff.world.layout import EMBEDDED

    args = ["generate", "--prompt", "a red circle", "--output", str(tmp_path / "a.gif"), "--quiet"]
    assert main([*args, "--embedding", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err and not (tmp_path / "a.gif").exists()

    world_width = json.loads((EMBEDDED / "base" / "text_encoder" / "config.json").read_text())["hidden_size"]
    save_file({"emb_params": vectors(2, world_width)}, tmp_path / "goright.safetensors")
    config = tmp_path / "run.yaml"
    entry = {"prompt": ["a red circle goright on a blue background"], "n_prompt": [""], "seed": 1, "steps": 1,
             "L": 2, "embeddings": ["goright.safetensors"],
             "motion_module": [str(EMBEDDED / "motion_module.safetensors")]}  # fmt: skip
    config.write_text(json.dumps([entry, entry]))
    cache = ModelCache()
    run_prompt_config(config, EMBEDDED / "base", tmp_path / "out", cache=cache, progress=False)
    assert cache.loads["embedding"] == 1 and "goright" in cache._pipe.tokenizer.added_tokens_encoder

    models = tmp_path / "models"
    (models / "embeddings").mkdir(parents=True)
    save_file({"emb_params": vectors(1, world_width)}, models / "embeddings" / "fits.safetensors")
    save_file({"clip_l": vectors(), "clip_g": vectors()}, models / "embeddings" / "xl.safetensors")
    (models / "embeddings" / "broken.pt").write_bytes(b"not a pickle")
    catalog = scan(models)
    assert fitting_embeddings(catalog, EMBEDDED / "base") == (str(models / "embeddings" / "fits.safetensors"),)
