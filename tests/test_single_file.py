import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from animatediff.base_model import load_base
from animatediff.formats.single_file import load_single_file_weights
from animatediff.pipeline import AnimationPipeline
from tests.ldm_checkpoint import ldm_state_dict, save_ldm_checkpoint
from tests.tiny import official_scheduler, tiny_motion, tiny_text_encoder, tiny_unet, tiny_vae


@pytest.fixture
def personal(tokenizer):
    """A 'personalized' model: same architecture as the base, different weights."""
    return tiny_unet(seed=5), tiny_vae(seed=6), tiny_text_encoder(len(tokenizer), seed=7)


@pytest.mark.parametrize("name", ["model.safetensors", "model.ckpt", "old-clip-keys.safetensors"])
def test_single_file_loads_to_the_same_weights(base_folder, personal, tmp_path, name):
    path = tmp_path / name
    save_ldm_checkpoint(path, *personal, wrap=name.endswith(".ckpt"), text_model_level=not name.startswith("old"))
    base = load_base(base_folder)
    assert not torch.equal(base.unet.conv_in.weight, personal[0].conv_in.weight)
    load_single_file_weights(path, base.unet, base.vae, base.text_encoder)
    for loaded, expected in zip((base.unet, base.vae, base.text_encoder), personal):
        a, b = loaded.state_dict(), expected.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), type(expected).__name__


def test_generating_with_the_single_file_equals_the_diffusers_folder(base_folder, personal, tokenizer, tmp_path):
    folder = tmp_path / "personal"
    tokenizer.save_pretrained(folder / "tokenizer")
    for sub, module in zip(("unet", "vae", "text_encoder"), personal):
        module.save_pretrained(folder / sub)
    official_scheduler().save_pretrained(folder / "scheduler")
    save_ldm_checkpoint(tmp_path / "personal.safetensors", *personal)

    args = dict(num_frames=3, num_inference_steps=2, seed=11, progress=False)
    motion = tiny_motion("v3")
    from_file = AnimationPipeline.from_pretrained(base_folder, motion, dreambooth=tmp_path / "personal.safetensors")
    from_folder = AnimationPipeline.from_pretrained(folder, motion)
    plain_base = AnimationPipeline.from_pretrained(base_folder, motion)
    video = from_file("a knight", **args)
    np.testing.assert_array_equal(video, from_folder("a knight", **args))
    assert np.abs(video - plain_base("a knight", **args)).max() > 1e-3


def _bad(tmp_path, personal, edit) -> str:  # noqa: ANN001
    sd = ldm_state_dict(*personal)
    edit(sd)
    save_file(sd, tmp_path / "bad.safetensors")
    return tmp_path / "bad.safetensors"


def _widen(sd: dict, dim: int) -> None:
    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    sd[key] = torch.zeros(sd[key].shape[0], dim)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.update({"conditioner.embedders.0.transformer.x": torch.zeros(1)}), "SDXL checkpoint"),
        (lambda sd: sd.update({"cond_stage_model.model.ln_final.weight": torch.zeros(1)}), "SD2.x checkpoint"),
        (lambda sd: _widen(sd, 1024), r"cross-attention dimension 1024 \(SD2.x\)"),
        (lambda sd: _widen(sd, 2048), r"cross-attention dimension 2048 \(SDXL\)"),
        (lambda sd: sd.pop("first_stage_model.decoder.conv_out.weight"), "vae weights .* 1 missing"),
        (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("model.diffusion_model.")], "not a single-file"),
    ],
)
def test_wrong_checkpoints_have_clear_errors(base_folder, personal, tmp_path, edit, message):
    base = load_base(base_folder)
    with pytest.raises(ValueError, match=message):
        load_single_file_weights(_bad(tmp_path, personal, edit), base.unet, base.vae, base.text_encoder)


def test_pickle_named_safetensors_and_a_lora(base_folder, tmp_path):
    base = load_base(base_folder)
    torch.save({"state_dict": {}}, tmp_path / "fake.safetensors")
    with pytest.raises(ValueError, match="looks like a torch pickle"):
        load_single_file_weights(tmp_path / "fake.safetensors", base.unet, base.vae, base.text_encoder)
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, tmp_path / "lora.safetensors")
    with pytest.raises(ValueError, match=r"a LoRA \(use --lora\)"):
        load_single_file_weights(tmp_path / "lora.safetensors", base.unet, base.vae, base.text_encoder)


def test_a_file_without_vae_keeps_the_base_vae(base_folder, personal, tmp_path):
    sd = {k: v for k, v in ldm_state_dict(*personal).items() if not k.startswith("first_stage_model.")}
    save_file(sd, tmp_path / "no_vae.safetensors")
    base = load_base(base_folder)
    vae_before = {k: v.clone() for k, v in base.vae.state_dict().items()}
    replaced = load_single_file_weights(tmp_path / "no_vae.safetensors", base.unet, base.vae, base.text_encoder)
    assert replaced == ["unet", "text_encoder"]
    assert all(torch.equal(v, vae_before[k]) for k, v in base.vae.state_dict().items())
    assert torch.equal(base.unet.conv_in.weight, personal[0].conv_in.weight)
