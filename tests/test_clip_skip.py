"""Clip skip, counted as the UIs count it (1 = the trained layer, 2 = the one before): the same frames as diffusers'
AnimateDiffPipeline and AnimateDiffSDXLPipeline with their `clip_skip` one less; bad values in one line."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from animatediff.errors import InputError
from animatediff.text_encoding import check_clip_skip, encode_prompts
from tests.diffusers_reference import diffusers_pipeline
from tests.sdxl_tiny import PROJECTION, tiny_sdxl_pipeline
from tests.test_sdxl_pipeline import ARGS as SDXL_ARGS
from tests.test_sdxl_pipeline import reference as sdxl_reference
from tests.tiny import tiny_clip_config

ARGS = dict(prompt="a red circle moving left", negative_prompt="blurry", num_frames=4, height=16, width=16,
            num_inference_steps=3, guidance_scale=7.5)  # fmt: skip


def with_text_model(encoder: CLIPTextModel) -> CLIPTextModel:
    """diffusers' clip_skip reads `text_encoder.text_model.final_layer_norm`; transformers 5 moved the norm onto the
    model itself. Give the reference pipeline the old path to the same norm."""
    if not hasattr(encoder, "text_model"):
        encoder.__dict__["text_model"] = SimpleNamespace(final_layer_norm=encoder.final_layer_norm)
    return encoder


def test_clip_skip_2_matches_diffusers_clip_skip_1(make_pipeline, one_thread):
    ours = make_pipeline("v2")
    with_text_model(ours.text_encoder)
    reference = diffusers_pipeline(ours)
    # diffusers takes clip_skip for the prompt only; we take it for the negative prompt too, as A1111 and ComfyUI do:
    # its negative text is given from the same earlier layer.
    args = {k: v for k, v in ARGS.items() if k != "negative_prompt"}
    negative = skipped_text(ours.tokenizer, ours.text_encoder, ARGS["negative_prompt"], 2)[0]
    generator = torch.Generator("cpu").manual_seed(3)
    expected = reference(**args, negative_prompt_embeds=negative, clip_skip=1, generator=generator, output_type="np")
    got = ours(**ARGS, clip_skip=2, seed=3, progress=False)
    np.testing.assert_allclose(got, expected.frames, rtol=0, atol=1e-4)
    plain = ours(**ARGS, seed=3, progress=False)
    assert np.abs(got - plain).max() > 1e-3  # the earlier layer is a different text
    np.testing.assert_array_equal(plain, ours(**ARGS, clip_skip=1, seed=3, progress=False))


@torch.no_grad()
def skipped_text(tokenizer, encoder, text: str, layer_from_end: int, norm: bool = True) -> torch.Tensor:  # noqa: ANN001
    """(The hidden states `layer_from_end` back, through the final norm where `norm`; the model's own output),
    written out here."""
    ids = tokenizer([text], padding="max_length", max_length=77, return_tensors="pt").input_ids
    out = encoder(ids, output_hidden_states=True)
    hidden = out.hidden_states[-layer_from_end]
    return (encoder.final_layer_norm(hidden) if norm else hidden), out[0]


def test_clip_skip_takes_the_earlier_layer_through_the_final_norm(make_pipeline):
    pipe = make_pipeline()
    tok, enc = pipe.tokenizer, pipe.text_encoder
    torch.testing.assert_close(encode_prompts(tok, enc, ["a cat"], 2), skipped_text(tok, enc, "a cat", 2)[0])
    torch.testing.assert_close(encode_prompts(tok, enc, ["a cat"]), skipped_text(tok, enc, "a cat", 1)[1])


def test_sdxl_clip_skip_matches_diffusers(tmp_path, one_thread):
    ours = tiny_sdxl_pipeline(tmp_path)
    vocab = len(ours.tokenizer)
    deeper = tiny_clip_config(vocab)
    deeper.num_hidden_layers = 3  # the tiny encoders have 2: SDXL's penultimate layer leaves no earlier one
    torch.manual_seed(0)
    ours.text_encoder = CLIPTextModel(deeper).eval()
    deeper_2 = tiny_clip_config(vocab, projection_dim=PROJECTION)
    deeper_2.num_hidden_layers = 3
    ours.text_encoder_2 = CLIPTextModelWithProjection(deeper_2).eval()
    reference = sdxl_reference(ours)
    args = dict(SDXL_ARGS, num_frames=4)
    # As for SD1.x, diffusers' negative text ignores clip_skip: given here from the layer clip skip 2 takes.
    states, pooled = zip(*(skipped_text(ours.tokenizer, enc, "blurry", 3, norm=False)
                           for enc in (ours.text_encoder, ours.text_encoder_2)))  # fmt: skip
    negative = dict(negative_prompt_embeds=torch.cat(states, -1), negative_pooled_prompt_embeds=pooled[1])
    generator = torch.Generator("cpu").manual_seed(2)
    expected = reference(**args, **negative, clip_skip=1, generator=generator, output_type="np")
    got = ours(**args, negative_prompt="blurry", clip_skip=2, seed=2, progress=False)
    np.testing.assert_allclose(got, expected.frames, rtol=0, atol=1e-4)
    assert np.abs(got - ours(**args, negative_prompt="blurry", seed=2, progress=False)).max() > 1e-3
    with pytest.raises(InputError, match="clip skip 3 goes past"):
        ours(**args, clip_skip=3, seed=2, progress=False)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_bad_clip_skip_is_one_line(value):
    with pytest.raises(InputError, match="clip skip must be a whole number"):
        check_clip_skip(value)


def test_clip_skip_past_the_first_layer_is_refused_before_sampling(make_pipeline):
    pipe = make_pipeline()  # 2 layers: clip skip 2 at most
    with pytest.raises(InputError, match=r"clip skip 3 goes past this text encoder's first layer \(2 layers"):
        pipe("a cat", num_frames=2, num_inference_steps=1, clip_skip=3, progress=False)


def test_cli_refuses_a_bad_clip_skip_in_one_line_before_loading(tmp_path, capsys):
    from animatediff.cli import main

    args = ["generate", "--prompt", "a red circle", "--output", str(tmp_path / "a.gif"), "--quiet"]
    assert main([*args, "--clip-skip", "0"]) == 2
    err = capsys.readouterr().err
    assert "clip skip must be a whole number from 1 (no skip) up, got 0" in err and err.count("\n") == 1
    assert not (tmp_path / "a.gif").exists()
