"""The writers of the formats users download: single-file LDM checkpoints and kohya LoRAs.

The single-file round trip through diffusers' converter at full precision is tested in test_single_file.py (its
files come from the same writer); here: half precision, metadata, atomic writes, and the kohya LoRA writer.
"""

import pytest
import torch
from safetensors import safe_open

from animatediff.base_model import load_base
from animatediff.formats.ldm_export import save_single_file
from animatediff.formats.lora import LoraMerger, load_lora, save_kohya_lora
from animatediff.formats.single_file import load_single_file_weights
from tests.tiny import tiny_text_encoder, tiny_unet, tiny_vae

pytestmark = pytest.mark.usefixtures("one_thread")

ATTN = "down_blocks.0.attentions.0.transformer_blocks.0"


def test_half_precision_single_file_loads_onto_the_base(base_folder, tokenizer, tmp_path):
    personal = tiny_unet(seed=5), tiny_vae(seed=6), tiny_text_encoder(len(tokenizer), seed=7)
    path = save_single_file(*personal, tmp_path / "out" / "m.safetensors", dtype=torch.float16, metadata={"note": "x"})
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]  # no temporary file left behind
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"note": "x"}
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    base = load_base(base_folder)
    assert load_single_file_weights(path, base.unet, base.vae, base.text_encoder) == ["unet", "vae", "text_encoder"]
    for loaded, expected in zip((base.unet, base.vae, base.text_encoder), personal):
        a, b = loaded.state_dict(), expected.state_dict()
        assert all(torch.equal(a[k], b[k].half().float()) for k in a), type(expected).__name__


def _pair(out: int, inp: int, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rank, inp, generator=g), torch.randn(out, rank, generator=g)


def test_kohya_lora_round_trips_through_the_reader_and_merges_with_alpha_over_rank(tokenizer, tmp_path):
    q, out = _pair(32, 32, 4, 0), _pair(32, 32, 2, 1)
    te = _pair(32, 32, 3, 2)
    layers = {f"{ATTN}.attn1.to_q": (*q, 2.0), f"{ATTN}.attn2.to_out.0": (*out, 8.0)}
    save_kohya_lora(layers, tmp_path / "unet.safetensors", metadata={"ss_network_dim": "4"})
    save_kohya_lora({"text_model.encoder.layers.0.self_attn.q_proj": (*te, 3.0)}, tmp_path / "te.safetensors",
                    component="text_encoder", dtype=torch.float16)  # fmt: skip
    with safe_open(str(tmp_path / "unet.safetensors"), "pt") as f:
        name = f"lora_unet_{ATTN}_attn1_to_q".replace(".", "_")
        assert set(f.keys()) >= {f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha"}
        assert f.get_tensor(f"{name}.alpha").shape == () and f.metadata() == {"ss_network_dim": "4"}

    models = {"unet": tiny_unet(), "text_encoder": tiny_text_encoder(len(tokenizer))}
    before = {c: {k: v.clone() for k, v in m.state_dict().items()} for c, m in models.items()}
    merger = LoraMerger(models)
    assert merger.add("unet", load_lora(tmp_path / "unet.safetensors")) == 2
    assert merger.add("te", load_lora(tmp_path / "te.safetensors")) == 1
    after = {c: m.state_dict() for c, m in models.items()}
    expected = {
        ("unet", f"{ATTN}.attn1.to_q.weight"): (2.0 / 4) * q[1] @ q[0],
        ("unet", f"{ATTN}.attn2.to_out.0.weight"): (8.0 / 2) * out[1] @ out[0],
        ("text_encoder", "encoder.layers.0.self_attn.q_proj.weight"): (3.0 / 3)
        * te[1].half().float()
        @ te[0].half().float(),
    }
    for (component, key), delta in expected.items():
        torch.testing.assert_close(after[component][key], before[component][key] + delta)


def test_kohya_lora_writer_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="ranks differ"):
        save_kohya_lora({"a.to_q": (torch.zeros(4, 8), torch.zeros(8, 2), 1.0)}, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="no LoRA layers"):
        save_kohya_lora(tiny_unet(), tmp_path / "x.safetensors")  # a model without PEFT layers
    with pytest.raises(ValueError, match="share the kohya name"):
        pair = (torch.zeros(2, 8), torch.zeros(8, 2), 1.0)
        save_kohya_lora({"a.b_c": pair, "a_b.c": pair}, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="unknown LoRA component"):
        save_kohya_lora({"a": (torch.zeros(2, 8), torch.zeros(8, 2), 1.0)}, tmp_path / "x.safetensors", "vae")
    assert not list(tmp_path.iterdir())
