"""SDXL single-file checkpoints (SGM layout) over an SDXL base: the same weights as the modules they were written
from, the real SDXL layout's names, and one-line errors for the other family, SD2 and refiners before weights load."""

import pytest
import torch
from safetensors.torch import save_file

from animatediff.base_model import load_base
from animatediff.formats.ldm_export import ldm_state_dict, save_single_file, unet_key
from animatediff.formats.single_file import checkpoint_family
from animatediff.formats.single_file_sdxl import convert_sdxl_single_file
from tests.sdxl_layout import real_sdxl_on_meta, sgm_names_by_diffusers
from tests.sdxl_tiny import tiny_sdxl_folder
from tests.tiny import tiny_text_encoder, tiny_unet, tiny_vae

PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory):
    return tiny_sdxl_folder(tmp_path_factory.mktemp("sdxl") / "base")


@pytest.fixture(scope="module")
def personal(sdxl_folder):
    """A personalized SDXL: the base's modules with every weight moved (another random SDXL of the same shape)."""
    model = load_base(sdxl_folder)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for part in PARTS:
            for p in getattr(model, part).parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def _file(model, path):  # noqa: ANN001, ANN202
    return save_single_file(model.unet, model.vae, model.text_encoder, path, text_encoder_2=model.text_encoder_2)


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_sdxl_single_file_gives_the_weights_it_was_written_from(sdxl_folder, personal, tmp_path, suffix):
    path = _file(personal, tmp_path / f"personal{suffix}")
    loaded, plain = load_base(sdxl_folder, dreambooth=path), load_base(sdxl_folder)
    for part in PARTS:
        want, got, base = (getattr(m, part).state_dict() for m in (personal, loaded, plain))
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want), part
        assert not torch.equal(next(iter(base.values())), next(iter(want.values())))  # the file changed it


def test_the_writer_uses_the_real_sdxl_names_and_diffusers_reads_them_all():
    unet, vae, clip_l, big_g = real_sdxl_on_meta()
    sd = ldm_state_dict(unet, vae, clip_l, text_encoder_2=big_g)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    known = {  # stabilityai/stable-diffusion-xl-base-1.0, sd_xl_base_1.0.safetensors
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight": (640, 2048),
        "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.ff.net.2.weight": (1280, 5120),
        "model.diffusion_model.middle_block.1.transformer_blocks.9.attn1.to_out.0.weight": (1280, 1280),
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.8.0.skip_connection.weight": (320, 640, 1, 1),
        "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
        "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
        "first_stage_model.decoder.up.3.block.0.conv1.weight": (512, 512, 3, 3),
        "conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072),
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
        "conditioner.embedders.1.model.transformer.resblocks.0.mlp.c_fc.weight": (5120, 1280),
        "conditioner.embedders.1.model.text_projection": (1280, 1280),
        "conditioner.embedders.1.model.positional_embedding": (77, 1280),
    }
    assert {k: shapes.get(k) for k in known} == known
    assert sum(k.startswith("model.diffusion_model.") for k in sd) == len(unet.state_dict()) == 1680
    assert checkpoint_family(shapes) == ("sdxl", "2048-wide text, two text encoders, conditioner.embedders.*")
    converted = convert_sdxl_single_file(sd, unet, vae, clip_l, big_g)
    for part, module in zip(PARTS, (unet, vae, clip_l, big_g)):
        own = {k: tuple(v.shape) for k, v in module.state_dict().items() if not k.endswith("position_ids")}
        assert {k: tuple(v.shape) for k, v in converted[part].items()} == own, part
    names = sgm_names_by_diffusers(unet)  # the rename table is the inverse of diffusers' conversion, key for key
    assert names == {k: unet_key(k, unet) for k in unet.state_dict()}
    assert names["up_blocks.0.upsamplers.0.conv.weight"] == "output_blocks.2.2.conv.weight"


def _refiner(sd: dict) -> dict:
    """An SDXL refiner's conditioner: only the bigG embedder, as embedders.0 (the UNet's text is 1280 wide)."""
    out = {k: v for k, v in sd.items() if not k.startswith("conditioner.embedders.0.")}
    return {k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v for k, v in out.items()}


def _no_weights_load(monkeypatch):  # noqa: ANN001, ANN202
    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("base weights loaded before the file was checked")

    monkeypatch.setattr("animatediff.base_model.UNet2DConditionModel.from_pretrained", refuse)


def test_the_other_family_sd2_and_refiners_are_one_line_before_weights_load(
    sdxl_folder, personal, base_folder, tokenizer, tmp_path, monkeypatch
):
    sdxl = ldm_state_dict(personal.unet, personal.vae, personal.text_encoder, text_encoder_2=personal.text_encoder_2)
    sd1 = ldm_state_dict(tiny_unet(), tiny_vae(), tiny_text_encoder(len(tokenizer)))
    save_file(sdxl, tmp_path / "sdxl.safetensors")
    save_file(sd1, tmp_path / "sd1.safetensors")
    save_file(_refiner(sdxl), tmp_path / "refiner.safetensors")
    save_file({**sd1, "cond_stage_model.model.ln_final.weight": torch.zeros(1)}, tmp_path / "sd2.safetensors")
    real_width = {"model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(1, 2048)}
    save_file(real_width, tmp_path / "unet_only_sdxl.safetensors")
    _no_weights_load(monkeypatch)
    cases = [
        (base_folder, "sdxl", r"sdxl.safetensors is an SDXL checkpoint \(64-wide text, two text encoders.*\) but the "
         r"base is SD1\.x; use an SDXL base with it, or an SD1\.x checkpoint$"),
        (base_folder, "unet_only_sdxl", r"is an SDXL checkpoint \(2048-wide text\) but the base is SD1\.x"),
        (sdxl_folder, "sd1", r"is an SD1\.x checkpoint \(32-wide text, CLIP ViT-L .*\) but the base is SDXL"),
        (sdxl_folder, "refiner", r"is an SDXL refiner checkpoint \(.*only the OpenCLIP ViT-bigG.*\), not supported"),
        (base_folder, "refiner", "refiner checkpoint"),
        (sdxl_folder, "sd2", r"is an SD2\.x checkpoint \(.*\); AnimateDiff animates SD1\.x and SDXL"),
    ]  # fmt: skip
    for folder, name, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            load_base(folder, dreambooth=tmp_path / f"{name}.safetensors")
        assert "\n" not in str(err.value)


def test_a_pickle_of_the_other_family_is_refused_once_read(base_folder, personal, tmp_path):
    path = _file(personal, tmp_path / "sdxl.ckpt")
    with pytest.raises(ValueError, match=r"is an SDXL checkpoint \(64-wide text.*\) but the base is SD1\.x"):
        load_base(base_folder, dreambooth=path)


def test_an_sdxl_file_without_vae_keeps_the_base_vae(sdxl_folder, personal, tmp_path):
    sd = ldm_state_dict(personal.unet, personal.vae, personal.text_encoder, text_encoder_2=personal.text_encoder_2)
    save_file({k: v for k, v in sd.items() if not k.startswith("first_stage_model.")}, tmp_path / "no_vae.safetensors")
    loaded, plain = load_base(sdxl_folder, dreambooth=tmp_path / "no_vae.safetensors"), load_base(sdxl_folder)
    assert all(torch.equal(v, plain.vae.state_dict()[k]) for k, v in loaded.vae.state_dict().items())
    assert torch.equal(loaded.text_encoder_2.text_projection.weight, personal.text_encoder_2.text_projection.weight)
    sd.pop("conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight")
    save_file(sd, tmp_path / "broken.safetensors")
    with pytest.raises(ValueError, match=r"the text_encoder_2 weights do not match .* 3 missing"):
        load_base(sdxl_folder, dreambooth=tmp_path / "broken.safetensors")
