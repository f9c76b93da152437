"""Perturbed-attention guidance (`pag=PAG(...)`, `--pag-scale`, run keys `pag_*`): the frames of diffusers'
AnimateDiffPAGPipeline on the same weights (its layer patterns read over the same names), off at scale 0, the
layers restored after, and bad settings in one line."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPAGPipeline

from animatediff.errors import InputError
from animatediff.pipeline import PAG, ControlNet
from animatediff.pipeline.pag import self_attention_layers
from tests.diffusers_reference import diffusers_motion_unet, diffusers_pipeline

ARGS = dict(num_frames=4, height=16, width=16, num_inference_steps=3)


def reference(ours, layers) -> AnimateDiffPAGPipeline:  # noqa: ANN001
    return diffusers_pipeline(ours, motion_adapter=True, cls=AnimateDiffPAGPipeline, pag_applied_layers=list(layers))


@pytest.mark.parametrize(
    ("layers", "guidance", "adaptive"),
    [
        (("mid_block.*attn1",), 7.5, 0.0),  # diffusers' default: the middle image and motion attn1
        (("mid_block.*attn1",), 1.0, 0.0),  # PAG without classifier-free guidance
        (("down_blocks.1", "up_blocks.*motion_modules.*attn2"), 7.5, 0.002),
    ],
)
def test_pag_matches_diffusers_animatediff_pag_pipeline(make_pipeline, layers, guidance, adaptive, one_thread):
    ours = make_pipeline("v2")
    theirs = reference(ours, layers)
    generator = torch.Generator("cpu").manual_seed(3)
    expected = theirs(prompt="a red circle", negative_prompt="blurry", **ARGS, guidance_scale=guidance, pag_scale=3.0,
                      pag_adaptive_scale=adaptive, generator=generator, output_type="np").frames  # fmt: skip
    pag = PAG(3.0, adaptive, layers)
    got = ours("a red circle", "blurry", **ARGS, guidance_scale=guidance, seed=3, progress=False, pag=pag)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    plain = ours("a red circle", "blurry", **ARGS, guidance_scale=guidance, seed=3, progress=False)
    assert np.abs(got - plain).max() > 1e-3
    again = ours("a red circle", "blurry", **ARGS, guidance_scale=guidance, seed=3, progress=False, pag=PAG(0.0))
    np.testing.assert_array_equal(again, plain)  # scale 0: off, and every layer was put back


def test_the_layer_names_are_diffusers_unet_motion_model_names(make_pipeline):
    ours = make_pipeline("v2")
    theirs = diffusers_motion_unet(ours.unet.unet, ours.unet.motion_modules)
    names = {n for n, m in theirs.named_modules() if getattr(m, "is_cross_attention", True) is False}
    assert set(self_attention_layers(ours.unet)) == names


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PAG(-1.0), "PAG scale must be a number from 0 up"),
        (lambda: PAG(3.0, layers="mid"), "PAG layers must be one or more name patterns"),
        (lambda: PAG(3.0, layers=("mid_block(",)), "is not a regular expression"),
    ],
)
def test_bad_settings_are_one_line(make, message):
    with pytest.raises(InputError, match=message):
        make()


def test_a_bad_layer_pattern_is_refused_before_sampling(make_pipeline, monkeypatch):
    import animatediff.pipeline.animation as animation

    monkeypatch.setattr(animation, "denoise", lambda *a, **k: pytest.fail("denoising started"))
    with pytest.raises(InputError, match="PAG layer pattern 'nowhere' matches no self-attention layer"):
        make_pipeline("v2")("a cat", **ARGS, progress=False, pag=PAG(3.0, layers=("nowhere",)))


def test_pag_with_an_ip_adapter_matches_diffusers(tmp_path, make_pipeline, one_thread):
    """The perturbed pass sees the image prompt as the conditional half of a guided batch does."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionModelWithProjection

    from animatediff.pipeline import IPAdapter
    from tests.test_ip_adapter import sample_image, tiny_image_encoder, tiny_ip_adapter

    ours = make_pipeline("v2")
    save_file(tiny_ip_adapter(ours.unet.unet), str(tmp_path / "ip.safetensors"))
    tiny_image_encoder(tmp_path / "image_encoder")
    encoder = CLIPVisionModelWithProjection.from_pretrained(tmp_path / "image_encoder").eval()
    theirs = diffusers_pipeline(ours, motion_adapter=True, cls=AnimateDiffPAGPipeline, feature_extractor=None,
                                image_encoder=encoder, pag_applied_layers=["mid_block.*attn1"])  # fmt: skip
    theirs.load_ip_adapter(str(tmp_path), subfolder="", weight_name="ip.safetensors", image_encoder_folder=None)
    theirs.set_ip_adapter_scale(0.7)
    generator = torch.Generator("cpu").manual_seed(4)
    expected = theirs(prompt="a red circle", negative_prompt="blurry", **ARGS, guidance_scale=7.5, pag_scale=3.0,
                      ip_adapter_image=sample_image(), generator=generator, output_type="np").frames  # fmt: skip
    ip_adapter = IPAdapter(tmp_path / "ip.safetensors", sample_image(), 0.7)
    got = ours("a red circle", "blurry", **ARGS, guidance_scale=7.5, seed=4, progress=False, pag=PAG(3.0),
               ip_adapter=ip_adapter)  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_pag_with_a_controlnet(make_pipeline, one_thread):
    """At ControlNet scale 0 the frames are PAG's alone (the perturbed pass takes the guided batch's layout)."""
    from tests.controlnet_helpers import tiny_controlnet
    from tests.test_controlnet import numbered_frames

    pipe = make_pipeline("v2")
    args = dict(ARGS, guidance_scale=7.5, seed=2, progress=False, pag=PAG(3.0))
    model = tiny_controlnet(pipe.unet.unet)
    alone = pipe("a red circle", "blurry", **args)
    off = pipe("a red circle", "blurry", **args, controlnets=[ControlNet(model, numbered_frames(4), scale=0.0)])
    np.testing.assert_allclose(off, alone, rtol=0, atol=1e-6)
    guess = ControlNet(model, numbered_frames(4), guess_mode=True)
    steered = pipe("a red circle", "blurry", **args, controlnets=[guess])
    assert np.isfinite(steered).all() and np.abs(steered - alone).max() > 1e-3


def test_generate_and_run_entries_take_pag(tmp_path, capsys):
    from animatediff.cli import build_parser, main
    from animatediff.cli.pag_options import pag_from_args
    from animatediff.entry_pipeline_args import entry_pag
    from animatediff.prompt_entries import parse_entry

    args = build_parser().parse_args(["generate", "--prompt", "p", "--pag-scale", "2", "--pag-layer", "up_blocks.1"])
    assert pag_from_args(args) == PAG(2.0, 0.0, ("up_blocks.1",))
    assert pag_from_args(build_parser().parse_args(["generate", "--prompt", "p"])) is None
    out = ["generate", "--prompt", "p", "--output", str(tmp_path / "a.gif"), "--quiet"]
    assert main([*out, "--pag-layer", "mid"]) == 2
    assert "--pag-adaptive-scale and --pag-layer need --pag-scale" in capsys.readouterr().err
    entry = parse_entry(
        {"prompt": ["p"], "motion_module": "m.ckpt", "pag_scale": 3, "pag_layers": "down_blocks.2"}, "run.yaml", "0"
    )
    assert entry_pag(entry) == PAG(3, 0.0, ("down_blocks.2",))
    assert entry_pag(parse_entry({"prompt": ["p"], "motion_module": "m.ckpt"}, "run.yaml", "0")) is None
    with pytest.raises(InputError, match="run.yaml: pag_adaptive_scale and pag_layers need pag_scale"):
        parse_entry({"prompt": ["p"], "motion_module": "m.ckpt", "pag_adaptive_scale": 0.1}, "run.yaml", "0")
    with pytest.raises(InputError, match="PAG scale must be a number from 0 up"):
        parse_entry({"prompt": ["p"], "motion_module": "m.ckpt", "pag_scale": "high"}, "run.yaml", "0")


def test_sdxl_takes_pag(tmp_path, one_thread):
    from tests.sdxl_tiny import tiny_sdxl_pipeline

    pipe = tiny_sdxl_pipeline(tmp_path)
    args = dict(ARGS, height=32, width=32, guidance_scale=5.0, seed=1, progress=False)
    plain, guided = pipe("a red circle", **args), pipe("a red circle", **args, pag=PAG(3.0, layers=("up_blocks",)))
    assert np.isfinite(guided).all() and np.abs(guided - plain).max() > 1e-3
