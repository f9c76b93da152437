import pytest
import torch
from safetensors.torch import save_file

from animatediff.formats.lora import LoraMerger, load_lora, parse_lora, parse_scaled_path
from tests.tiny import tiny_text_encoder, tiny_unet

ATTN = "down_blocks.0.attentions.0.transformer_blocks.0"
TE_Q = "encoder.layers.0.self_attn.q_proj"


def _pair(rank: int, out_shape: tuple[int, ...], in_shape: tuple[int, ...], seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    down = torch.randn(rank, *in_shape, generator=g)
    up = torch.randn(out_shape[0], rank, *out_shape[1:], generator=g)
    return down, up


@pytest.fixture
def models(tokenizer):
    return {"unet": tiny_unet(), "text_encoder": tiny_text_encoder(len(tokenizer))}


def _kohya(pairs: dict[str, tuple], alphas: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    sd = {}
    for name, (down, up) in pairs.items():
        sd[f"{name}.lora_down.weight"] = down
        sd[f"{name}.lora_up.weight"] = up
        if alphas and name in alphas:
            sd[f"{name}.alpha"] = torch.tensor(alphas[name])
    return sd


def _weights(models):
    return {c: {k: v.clone() for k, v in m.state_dict().items()} for c, m in models.items()}


def test_kohya_merge_matches_explicit_formula_with_alpha(models):
    q = _pair(4, (32,), (32,), 0)  # attn1.to_q: Linear(32, 32)
    k = _pair(2, (32,), (32,), 1)  # attn2.to_k: Linear(cross 32, 32)
    te = _pair(3, (32,), (32,), 2)
    sd = _kohya(
        {
            f"lora_unet_{ATTN}_attn1_to_q".replace(".", "_"): q,
            f"lora_unet_{ATTN}_attn2_to_k".replace(".", "_"): k,
            f"lora_te_text_model_{TE_Q}".replace(".", "_"): te,
        },
        alphas={f"lora_unet_{ATTN}_attn1_to_q".replace(".", "_"): 1.0},  # others: no alpha → factor 1
    )
    before = _weights(models)
    merger = LoraMerger(models)
    assert merger.add("style", parse_lora(sd), scale=0.7) == 3

    after = {c: m.state_dict() for c, m in models.items()}
    expected_q = before["unet"][f"{ATTN}.attn1.to_q.weight"] + 0.7 * (1.0 / 4) * q[1] @ q[0]
    expected_k = before["unet"][f"{ATTN}.attn2.to_k.weight"] + 0.7 * k[1] @ k[0]
    expected_te = before["text_encoder"][f"{TE_Q}.weight"] + 0.7 * te[1] @ te[0]
    torch.testing.assert_close(after["unet"][f"{ATTN}.attn1.to_q.weight"], expected_q)
    torch.testing.assert_close(after["unet"][f"{ATTN}.attn2.to_k.weight"], expected_k)
    torch.testing.assert_close(after["text_encoder"][f"{TE_Q}.weight"], expected_te)
    untouched = [k for k in before["unet"] if k not in (f"{ATTN}.attn1.to_q.weight", f"{ATTN}.attn2.to_k.weight")]
    assert all(torch.equal(before["unet"][k], after["unet"][k]) for k in untouched)


def test_conv_loras_1x1_and_3x3(models):
    unet = models["unet"]
    proj_in = "down_blocks.0.attentions.0.proj_in"  # Conv2d 1×1 in SD1.x
    conv1 = "down_blocks.0.resnets.0.conv1"  # Conv2d 3×3
    assert unet.get_parameter(f"{proj_in}.weight").shape == (32, 32, 1, 1)
    assert unet.get_parameter(f"{conv1}.weight").shape == (32, 32, 3, 3)
    p = _pair(4, (32, 1, 1), (32, 1, 1), 3)
    c = _pair(4, (32, 1, 1), (32, 3, 3), 4)
    sd = _kohya({f"lora_unet_{proj_in}".replace(".", "_"): p, f"lora_unet_{conv1}".replace(".", "_"): c})
    before = _weights(models)["unet"]
    LoraMerger(models).add("locon", parse_lora(sd), scale=0.5)
    delta_p = torch.einsum("or,ri->oi", p[1][:, :, 0, 0], p[0][:, :, 0, 0])[:, :, None, None]
    delta_c = torch.einsum("or,rikl->oikl", c[1][:, :, 0, 0], c[0])
    torch.testing.assert_close(unet.get_parameter(f"{proj_in}.weight"), before[f"{proj_in}.weight"] + 0.5 * delta_p)
    torch.testing.assert_close(unet.get_parameter(f"{conv1}.weight"), before[f"{conv1}.weight"] + 0.5 * delta_c)


def test_peft_and_kohya_layouts_give_the_same_weights(tokenizer):
    q, te = _pair(4, (32,), (32,), 5), _pair(4, (32,), (32,), 6)
    kohya = _kohya(
        {f"lora_unet_{ATTN}_attn1_to_q".replace(".", "_"): q, f"lora_te_text_model_{TE_Q}".replace(".", "_"): te}
    )
    peft = {
        f"unet.{ATTN}.attn1.to_q.lora_A.weight": q[0],
        f"unet.{ATTN}.attn1.to_q.lora_B.weight": q[1],
        f"text_encoder.text_model.{TE_Q}.lora_A.weight": te[0],
        f"text_encoder.text_model.{TE_Q}.lora_B.weight": te[1],
    }
    old_diffusers = {
        f"{ATTN}.attn1.processor.to_q_lora.down.weight": q[0],
        f"{ATTN}.attn1.processor.to_q_lora.up.weight": q[1],
        f"text_encoder.{TE_Q}.lora_linear_layer.down.weight": te[0],
        f"text_encoder.{TE_Q}.lora_linear_layer.up.weight": te[1],
    }
    results = []
    for sd in (kohya, peft, old_diffusers):
        models = {"unet": tiny_unet(), "text_encoder": tiny_text_encoder(len(tokenizer))}
        LoraMerger(models).add("x", parse_lora(sd), 0.9)
        results.append(_weights(models))
    for other in results[1:]:
        for c in ("unet", "text_encoder"):
            assert all(torch.equal(results[0][c][k], other[c][k]) for k in results[0][c])


def test_unmerge_restores_exactly_and_two_loras_compose(models):
    a = _pair(4, (32,), (32,), 7)
    b = _pair(8, (32,), (32,), 8)
    name = f"lora_unet_{ATTN}_attn1_to_q".replace(".", "_")
    other = f"lora_unet_{ATTN}_attn1_to_v".replace(".", "_")
    before = _weights(models)
    merger = LoraMerger(models)
    merger.add("a", parse_lora(_kohya({name: a}, {name: 2.0})), scale=0.8)
    merger.add("b", parse_lora(_kohya({name: b, other: b})), scale=-0.3)
    assert merger.active == {"a": 0.8, "b": -0.3}
    w = models["unet"].get_parameter(f"{ATTN}.attn1.to_q.weight")
    base = before["unet"][f"{ATTN}.attn1.to_q.weight"]
    torch.testing.assert_close(w, base + 0.8 * (2.0 / 4) * a[1] @ a[0] - 0.3 * b[1] @ b[0])

    merger.set_scale("b", 1.0)
    torch.testing.assert_close(w, base + 0.8 * 0.5 * a[1] @ a[0] + b[1] @ b[0])
    merger.remove("a")
    torch.testing.assert_close(w, base + b[1] @ b[0])
    merger.remove("b")
    after = _weights(models)
    for c in after:
        assert all(torch.equal(before[c][k], after[c][k]) for k in before[c]), c


def test_text_encoder_lora_changes_the_embedding(models, tokenizer):
    te = models["text_encoder"]
    ids = tokenizer(["a fox"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    base = te(ids)[0]
    sd = _kohya({f"lora_te_text_model_{TE_Q}".replace(".", "_"): _pair(4, (32,), (32,), 9)})
    merger = LoraMerger(models)
    merger.add("t", parse_lora(sd), 1.0)
    assert (te(ids)[0] - base).abs().max() > 1e-3
    merger.clear()
    assert torch.equal(te(ids)[0], base)


def test_keys_that_match_nothing_say_how_many_matched(models):
    q = _pair(4, (32,), (32,), 0)
    sd = _kohya({"lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q": q, "lora_unet_nowhere": q})
    with pytest.raises(ValueError, match=r"0 of 2 LoRA layers match.*LDM block names"):
        LoraMerger(models).add("x", parse_lora(sd))
    sd.update(_kohya({f"lora_unet_{ATTN}_attn1_to_q".replace(".", "_"): q}))
    with pytest.raises(ValueError, match="1 of 3 LoRA layers match"):
        LoraMerger(models).add("x", parse_lora(sd))
    assert LoraMerger(models).add("x", parse_lora(sd), strict=False) == 1


def test_bad_loras_have_clear_errors(models, tmp_path):
    wide = _pair(4, (32,), (768,), 0)  # an SD1.5-sized cross-attention LoRA on the tiny model
    with pytest.raises(ValueError, match="does not fit the weight"):
        LoraMerger(models).add("x", parse_lora(_kohya({f"lora_unet_{ATTN}_attn2_to_k".replace(".", "_"): wide})))
    sdxl = parse_lora(_kohya({"lora_te2_text_model_encoder_layers_0_mlp_fc1": wide}))  # read; refused on merge
    with pytest.raises(ValueError, match=r"is an SDXL LoRA \(it has text_encoder_2 / lora_te2 keys\) but the base"):
        LoraMerger(models).add("x", sdxl)
    with pytest.raises(ValueError, match="no up weight"):
        parse_lora({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="no LoRA weights"):
        parse_lora({"conv_in.weight": torch.zeros(2)})
    pickle = tmp_path / "pickle.safetensors"
    torch.save({"a": torch.zeros(1)}, pickle)
    with pytest.raises(ValueError, match="looks like a torch pickle"):
        load_lora(pickle)


def test_load_lora_from_file(models, tmp_path):
    q = _pair(4, (32,), (32,), 0)
    save_file(_kohya({f"lora_unet_{ATTN}_attn1_to_q".replace(".", "_"): q}), tmp_path / "s.safetensors")
    lora = load_lora(tmp_path / "s.safetensors")
    assert lora.name == "s.safetensors" and len(lora.layers) == 1 and lora.layers[0].rank == 4


def test_scaled_paths():
    assert parse_scaled_path("a/b.safetensors:0.6") == ("a/b.safetensors", 0.6)
    assert parse_scaled_path("a/b.safetensors") == ("a/b.safetensors", 1.0)
    assert parse_scaled_path("C:\\x\\b.safetensors", 0.8) == ("C:\\x\\b.safetensors", 0.8)
    assert parse_scaled_path("/tmp/a:b/c.ckpt") == ("/tmp/a:b/c.ckpt", 1.0)
    with pytest.raises(ValueError, match="'strong' is not a number"):
        parse_scaled_path("b.safetensors:strong")


def test_kohya_merge_equals_diffusers_fuse_lora(models, tokenizer):
    """Same file through diffusers' `load_lora_weights` + `fuse_lora`: identical weights (linear, 1×1, 3×3, alpha)."""
    pytest.importorskip("peft")
    from diffusers import StableDiffusionPipeline

    from tests.tiny import official_scheduler, tiny_vae

    shapes = {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": ((32,), (32,)),
        "lora_unet_down_blocks_0_attentions_0_proj_in": ((32, 1, 1), (32, 1, 1)),
        "lora_unet_up_blocks_0_resnets_1_conv2": ((64, 1, 1), (64, 3, 3)),
        # diffusers 0.42 maps kohya's text-encoder attention keys to names transformers 5 lacks; its MLP keys work.
        "lora_te_text_model_encoder_layers_1_mlp_fc1": ((64,), (32,)),
    }
    pairs = {name: _pair(4, out, inp, seed) for seed, (name, (out, inp)) in enumerate(shapes.items())}
    sd = _kohya(pairs, alphas={name: 2.0 for name in pairs})
    LoraMerger(models).add("x", parse_lora(sd), 0.7)

    theirs = {"unet": tiny_unet(), "text_encoder": tiny_text_encoder(len(tokenizer))}
    pipe = StableDiffusionPipeline(
        vae=tiny_vae(), tokenizer=tokenizer, scheduler=official_scheduler(), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False, **theirs,
    )  # fmt: skip
    pipe.load_lora_weights({k: v.clone() for k, v in sd.items()}, adapter_name="x")
    pipe.fuse_lora(lora_scale=0.7)
    pipe.unload_lora_weights()
    for c in models:
        ours, ref = models[c].state_dict(), theirs[c].state_dict()
        assert all(torch.equal(ours[k], ref[k]) for k in ours), c
    fc1 = "encoder.layers.1.mlp.fc1.weight"  # the comparison is not vacuous: both sides did merge
    assert not torch.equal(
        models["text_encoder"].get_parameter(fc1), tiny_text_encoder(len(tokenizer)).get_parameter(fc1)
    )
