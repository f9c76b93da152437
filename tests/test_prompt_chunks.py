"""Long prompts read in A1111's 75-token chunks (`long_prompts="chunks"`): how a prompt splits (the window, BREAK,
the comma backtrack), what each chunk encodes to, and prompts of different lengths made one length with the empty
prompt's chunk. The tiny tokenizer reads a single letter as one token and "," as one."""

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.pipeline.text import encode_text, same_length
from animatediff.prompt_chunks import COMMA_BACKTRACK, prompt_chunks, token_rows
from animatediff.text_encoding import encode_prompts

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def words(n: int, start: int = 0) -> str:
    """`n` one-token words."""
    return " ".join(LETTERS[(start + i) % 26] for i in range(n))


def ids(tokenizer, text: str) -> list[int]:  # noqa: ANN001
    return tokenizer(text, add_special_tokens=False).input_ids


@pytest.mark.parametrize("prompt", ["", "a red circle moving left", words(75), "a (red:1.3) circle, " + words(40)])
@pytest.mark.parametrize("weighting", ["none", "a1111"])
def test_a_prompt_within_the_window_reads_as_under_truncate(tokenizer, prompt, weighting):
    chunked = token_rows(tokenizer, [prompt], weighting, "chunks")
    cut = token_rows(tokenizer, [prompt], weighting, "truncate")
    assert chunked[0].shape[0] == cut[0].shape[0] == 1  # one chunk, one row
    torch.testing.assert_close(chunked[0], cut[0], rtol=0, atol=0)
    if weighting == "none":  # exactly the plain tokenizer's row
        plain = tokenizer([prompt], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        torch.testing.assert_close(cut[0], plain.input_ids, rtol=0, atol=0)


def test_a_long_prompt_is_cut_or_read_in_chunks_of_75(tokenizer):
    prompt = words(160)
    everything = ids(tokenizer, prompt)
    assert [len(t) for t, _ in prompt_chunks(tokenizer, prompt, long_prompts="chunks")] == [75, 75, 10]
    assert sum((t for t, _ in prompt_chunks(tokenizer, prompt, long_prompts="chunks")), []) == everything
    ((cut, _),) = prompt_chunks(tokenizer, prompt)
    assert cut == everything[:75]
    rows, weights = token_rows(tokenizer, [prompt], long_prompts="chunks")
    assert rows.shape == (3, 77) and weights is None  # three chunks, three rows
    assert (rows[:, 0] == tokenizer.bos_token_id).all() and rows[2, 11] == tokenizer.eos_token_id


def test_break_ends_a_chunk(tokenizer):
    chunks = prompt_chunks(tokenizer, "a b c BREAK d e", long_prompts="chunks")
    assert [t for t, _ in chunks] == [ids(tokenizer, "a b c"), ids(tokenizer, "d e")]
    assert len(prompt_chunks(tokenizer, "a b c break d e", long_prompts="chunks")) == 1  # lower case: a word
    assert len(prompt_chunks(tokenizer, "a BREAKING b", long_prompts="chunks")) == 1  # part of a word
    assert len(prompt_chunks(tokenizer, "a b BREAK", long_prompts="chunks")) == 1  # nothing after it
    assert [len(t) for t, _ in prompt_chunks(tokenizer, "BREAK a", long_prompts="chunks")] == [0, 1]  # as A1111
    assert len(prompt_chunks(tokenizer, "a BREAK b")) == 1  # under truncate BREAK is a word


def test_a_full_chunk_ends_after_a_near_comma(tokenizer):
    near = words(70) + ", " + words(10, start=3)  # the comma is the 71st token
    first, second = prompt_chunks(tokenizer, near, long_prompts="chunks")
    assert first[0] == ids(tokenizer, words(70) + ",") and second[0] == ids(tokenizer, words(10, start=3))
    far = words(40) + ", " + words(50)  # the comma is 35 tokens back when the chunk fills
    assert 75 - 41 > COMMA_BACKTRACK
    assert [len(t) for t, _ in prompt_chunks(tokenizer, far, long_prompts="chunks")] == [75, 16]


def test_weights_follow_their_tokens_across_chunks(tokenizer):
    prompt = words(74) + " (x y:1.5) z"
    (first, first_weights), (second, second_weights) = prompt_chunks(tokenizer, prompt, "a1111", "chunks")
    assert first_weights[-1] == 1.5 and second_weights == [1.5, 1.0]
    assert first[-1] == ids(tokenizer, "x")[0] and second == ids(tokenizer, "y z")


def test_each_chunk_encodes_as_its_own_text_and_short_prompts_are_filled_with_the_empty_chunk(make_pipeline):
    pipe = make_pipeline()
    tok, enc = pipe.tokenizer, pipe.text_encoder
    prompt = words(160)
    with torch.no_grad():
        got = encode_prompts(tok, enc, [prompt, "a red circle"], long_prompts="chunks")
        parts = encode_prompts(tok, enc, [words(75), words(75, start=75), words(10, start=150)])
        short, empty = encode_prompts(tok, enc, ["a red circle", ""])
        cut = encode_prompts(tok, enc, [prompt])
        assert got.shape == (2, 3 * 77, 32)
        torch.testing.assert_close(got[0], parts.flatten(0, 1), rtol=0, atol=1e-6)
        torch.testing.assert_close(got[1], torch.cat([short, empty, empty]), rtol=0, atol=1e-6)
        torch.testing.assert_close(cut, parts[:1], rtol=0, atol=1e-6)  # truncate: the first chunk
        skipped = encode_prompts(tok, enc, [prompt], clip_skip=2, long_prompts="chunks")
        torch.testing.assert_close(skipped[0, :77], encode_prompts(tok, enc, [words(75)], clip_skip=2)[0])


def test_emphasis_keeps_each_chunks_mean(make_pipeline):
    pipe = make_pipeline()
    tok, enc = pipe.tokenizer, pipe.text_encoder
    with torch.no_grad():
        plain = encode_prompts(tok, enc, [words(100)], long_prompts="chunks")
        weighted = encode_prompts(tok, enc, ["(" + words(100) + ":1.4)"], weighting="a1111", long_prompts="chunks")
    for chunk in range(2):
        part = slice(77 * chunk, 77 * (chunk + 1))
        torch.testing.assert_close(weighted[0, part].mean(), plain[0, part].mean())
    assert (weighted - plain).abs().max() > 1e-3


def test_prompts_encoded_apart_are_made_one_length(make_pipeline):
    pipe = make_pipeline()
    tok, enc = pipe.tokenizer, pipe.text_encoder

    def encode(prompts):  # noqa: ANN001, ANN202
        return encode_prompts(tok, enc, prompts, long_prompts="chunks"), None

    with torch.no_grad():
        together = encode([words(100), "blurry"])[0]
        apart = same_length([encode([words(100)])[0], encode(["blurry"])[0]], encode)
        text = encode_text(tok, enc, [words(100)], ["blurry"], True, torch.device("cpu"), torch.float32,
                           long_prompts="chunks")  # fmt: skip
    torch.testing.assert_close(torch.cat(apart), together, rtol=0, atol=1e-6)
    torch.testing.assert_close(text.cond, together[:1], rtol=0, atol=1e-6)
    torch.testing.assert_close(text.uncond, together[1:], rtol=0, atol=1e-6)


ARGS = dict(num_frames=4, height=16, width=16, num_inference_steps=2, guidance_scale=7.5, seed=1, progress=False)


def test_the_pipeline_reads_long_prompts_in_chunks(make_pipeline, one_thread):
    pipe = make_pipeline()
    long = "a red circle moving left, " + words(90)
    truncated = pipe(long, "blurry", **ARGS)
    chunked = pipe(long, "blurry", **ARGS, long_prompts="chunks")
    assert np.abs(chunked - truncated).max() > 1e-4
    short = pipe("a red circle", "blurry", **ARGS)
    np.testing.assert_array_equal(short, pipe("a red circle", "blurry", **ARGS, long_prompts="chunks"))
    travel = pipe({0: "a red circle", 3: long}, "blurry", **ARGS, long_prompts="chunks")  # 1 and 2 chunks
    assert travel.shape == short.shape and np.isfinite(travel).all()
    with pytest.raises(InputError, match="long prompts 'wrap': choose one of truncate, chunks"):
        pipe("a red circle", **ARGS, long_prompts="wrap")


def test_generate_long_prompts_chunks_reaches_the_pipeline(tmp_path, pipeline_calls, one_thread):
    from animatediff.cli import main

    out = tmp_path / "long.gif"
    prompt = "a red circle moving right on a blue background, " + words(80)
    args = ["generate", "--prompt", prompt, "--frames", "2", "--steps", "1", "--output", str(out), "--quiet"]
    assert main([*args, "--long-prompts", "chunks"]) == 0 and out.exists()
    assert [c["long_prompts"] for c in pipeline_calls] == ["chunks"]


def test_chunked_text_reaches_windows_controlnets_and_ip_adapters(make_pipeline, tmp_path, one_thread):
    """The UNet, its ControlNets and the IP-Adapter's attention take text of 77 × chunks tokens; context windows
    hand each window the same text."""
    from safetensors.torch import save_file

    from animatediff.pipeline.controlnet import ControlNet
    from animatediff.pipeline.ip_adapter import IPAdapter
    from tests.controlnet_helpers import tiny_controlnet
    from tests.test_controlnet import numbered_frames
    from tests.test_ip_adapter import sample_image, tiny_image_encoder, tiny_ip_adapter

    pipe, folder = make_pipeline("v2"), tmp_path
    save_file(tiny_ip_adapter(pipe.unet.unet), str(folder / "ip.safetensors"))
    tiny_image_encoder(folder / "image_encoder")
    long = "a red circle moving left, " + words(90)
    args = dict(ARGS, num_frames=6, long_prompts="chunks")
    plain = pipe(long, "blurry", **args)
    windowed = pipe(long, "blurry", **args, context_length=4, context_overlap=2)
    controlled = pipe(long, "blurry", **args, controlnets=[ControlNet(tiny_controlnet(pipe.unet.unet),
                                                                      numbered_frames(6))])  # fmt: skip
    imaged = pipe(long, "blurry", **args, ip_adapter=IPAdapter(folder / "ip.safetensors", sample_image(), 0.8))
    for frames in (windowed, controlled, imaged):
        assert frames.shape == plain.shape and np.abs(frames - plain).max() > 1e-4
