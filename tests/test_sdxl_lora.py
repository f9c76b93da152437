"""SDXL LoRAs, kohya (SGM UNet names, `lora_te1_` / `lora_te2_`) and diffusers/PEFT (`unet.`, `text_encoder.`,
`text_encoder_2.`), merge into our SDXL pipeline as diffusers' own `fuse_lora` merges them into a
StableDiffusionXLPipeline of the same parts; unmerging restores every weight bit for bit; a LoRA of the other
family is one line before anything merges."""

import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from peft import LoraConfig, inject_adapter_in_model

from animatediff.base_model import load_base
from animatediff.formats import save_motion_modules
from animatediff.formats.lora import peft_lora_layers
from animatediff.formats.lora_families import sgm_module_names
from animatediff.formats.state_dicts import write_state_dict
from animatediff.model_cache import ModelCache, PipelineSpec
from animatediff.pipeline import AnimationPipeline
from tests.sdxl_layout import real_sdxl_on_meta, sgm_names_by_diffusers
from tests.sdxl_tiny import tiny_sdxl_folder, tiny_sdxl_motion

SCALE = 0.7
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "ff.net.0.proj", "conv1", "conv2", "time_emb_proj",
                "conv_shortcut", "conv", "linear_1"]  # fmt: skip
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
PARTS = ("unet", "text_encoder", "text_encoder_2")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_sdxl_folder(tmp_path_factory.mktemp("sdxl") / "base")


@pytest.fixture(scope="module")
def layers(folder):
    """{component: {module path: (down, up, alpha)}}: PEFT LoRA layers (rank 4, alpha 8, random A and B) on the
    tiny SDXL's UNet (attention, feed-forward, resnets, down/upsamplers, time and size embeddings) and both text
    encoders."""
    base = load_base(folder)
    out = {}
    for seed, part in enumerate(PARTS):
        torch.manual_seed(seed)
        targets = UNET_TARGETS if part == "unet" else TEXT_TARGETS
        config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
        model = inject_adapter_in_model(config, getattr(base, part))
        out[part] = {k: (d.detach().clone(), u.detach().clone(), a) for k, (d, u, a) in peft_lora_layers(model).items()}
    return out


@pytest.fixture(scope="module")
def files(folder, layers, tmp_path_factory):
    """The same LoRA as diffusers writes it (`save_lora_weights`, alpha folded into B) and as kohya's sd-scripts
    does for SDXL (UNet in SGM names, from the inverse of diffusers' single-file conversion)."""
    tmp = tmp_path_factory.mktemp("loras")
    peft = {
        part: {
            f"{path}.lora_{ab}.weight": w
            for path, (down, up, alpha) in layers[part].items()
            for ab, w in (("A", down), ("B", up * alpha / down.shape[0]))
        }
        for part in PARTS
    }
    StableDiffusionXLPipeline.save_lora_weights(
        tmp, unet_lora_layers=peft["unet"], text_encoder_lora_layers=peft["text_encoder"],
        text_encoder_2_lora_layers=peft["text_encoder_2"],
    )  # fmt: skip
    sgm = sgm_names_by_diffusers(load_base(folder).unet)
    kohya = {}
    for part, prefix in zip(PARTS, ("lora_unet_", "lora_te1_", "lora_te2_")):
        for path, (down, up, alpha) in layers[part].items():
            if part == "unet":
                path = sgm[f"{path}.weight"].removesuffix(".weight")
            elif not path.startswith("text_model."):
                path = f"text_model.{path}"  # kohya writes transformers 4 names
            name = prefix + path.replace(".", "_")
            kohya |= {
                f"{name}.lora_down.weight": down,
                f"{name}.lora_up.weight": up,
                f"{name}.alpha": torch.tensor(alpha),
            }
    write_state_dict(tmp / "kohya.safetensors", kohya)
    return {"diffusers": tmp / "pytorch_lora_weights.safetensors", "kohya": tmp / "kohya.safetensors"}


def _diffusers_fused(folder, path) -> dict[str, dict[str, torch.Tensor]]:  # noqa: ANN001
    base = load_base(folder)
    pipe = StableDiffusionXLPipeline(
        vae=base.vae, text_encoder=base.text_encoder, text_encoder_2=base.text_encoder_2, tokenizer=base.tokenizer,
        tokenizer_2=base.tokenizer_2, unet=base.unet, scheduler=None,
    )  # fmt: skip
    pipe.load_lora_weights(str(path))
    pipe.fuse_lora(lora_scale=SCALE, components=list(PARTS))
    pipe.unload_lora_weights()
    return {part: getattr(pipe, part).state_dict() for part in PARTS}


def _ours(pipe: AnimationPipeline) -> dict[str, dict[str, torch.Tensor]]:
    return {"unet": pipe.unet.unet.state_dict(), "text_encoder": pipe.text_encoder.state_dict(),
            "text_encoder_2": pipe.text_encoder_2.state_dict()}  # fmt: skip


@pytest.mark.parametrize("layout", ["kohya", "diffusers"])
def test_sdxl_lora_merges_as_diffusers_fuses_it_and_unmerges_exactly(folder, layers, files, layout):
    pipe = AnimationPipeline.from_pretrained(folder, tiny_sdxl_motion())
    before = {part: {k: v.clone() for k, v in sd.items()} for part, sd in _ours(pipe).items()}
    name = pipe.add_lora(files[layout], SCALE)
    merged, fused = _ours(pipe), _diffusers_fused(folder, files[layout])
    for part in PARTS:
        assert merged[part].keys() == fused[part].keys()
        for key, weight in fused[part].items():
            torch.testing.assert_close(merged[part][key], weight, rtol=0, atol=1e-6, msg=f"{part} {key}")
        touched = {f"{path.removeprefix('text_model.')}.weight" for path in layers[part]}
        changed = {
            k.removeprefix("text_model.") for k in merged[part] if not torch.equal(merged[part][k], before[part][k])
        }
        assert changed == touched, part  # every LoRA layer merged, nothing else
    path, (down, up, alpha) = next((p, layer) for p, layer in layers["unet"].items() if layer[0].ndim == 2)
    want = before["unet"][f"{path}.weight"] + SCALE * alpha / down.shape[0] * up @ down  # W + scale · B · A
    torch.testing.assert_close(merged["unet"][f"{path}.weight"], want)
    pipe.loras.remove(name)
    after = _ours(pipe)
    assert all(torch.equal(after[p][k], before[p][k]) for p in PARTS for k in before[p])


def test_model_cache_switches_sdxl_loras_exactly(folder, files, tmp_path):
    motion = str(save_motion_modules(tiny_sdxl_motion(), tmp_path / "mm.safetensors"))
    cache, base = ModelCache(), str(folder)
    pipe = cache.pipeline(PipelineSpec(base, motion, loras=(("image", str(files["kohya"]), SCALE),)))
    kohya = {p: {k: v.clone() for k, v in sd.items()} for p, sd in _ours(pipe).items()}
    same = cache.pipeline(PipelineSpec(base, motion, loras=(("image", str(files["diffusers"]), SCALE),)))
    assert same is pipe and cache.loads == {"base": 1, "motion_module": 1, "lora": 2}
    for part, sd in _ours(pipe).items():  # the two layouts of one LoRA merge alike
        for key, weight in sd.items():
            torch.testing.assert_close(weight, kohya[part][key], rtol=0, atol=1e-6)
    cache.pipeline(PipelineSpec(base, motion))
    plain = load_base(folder)
    for part, sd in _ours(pipe).items():
        assert all(torch.equal(v, getattr(plain, part).state_dict()[k]) for k, v in sd.items()), part


def test_kohya_sgm_names_resolve_on_the_real_sdxl_unet():
    unet = real_sdxl_on_meta()[0]
    names = sgm_module_names(unet)
    block = "transformer_blocks"
    known = {  # kohya SDXL module names → diffusers'
        f"input_blocks.4.1.{block}.0.attn1.to_q": f"down_blocks.1.attentions.0.{block}.0.attn1.to_q",
        f"input_blocks.8.1.{block}.9.attn2.to_k": f"down_blocks.2.attentions.1.{block}.9.attn2.to_k",
        "middle_block.1.proj_in": "mid_block.attentions.0.proj_in",
        "output_blocks.2.2.conv": "up_blocks.0.upsamplers.0.conv",
        "output_blocks.8.0.skip_connection": "up_blocks.2.resnets.2.conv_shortcut",
        "input_blocks.1.0.in_layers.2": "down_blocks.0.resnets.0.conv1",
        "input_blocks.1.0.emb_layers.1": "down_blocks.0.resnets.0.time_emb_proj",
        "label_emb.0.0": "add_embedding.linear_1",
    }
    assert {k: names.get(k) for k in known} == known
    assert len(names) == len([m for m in unet.modules() if isinstance(getattr(m, "weight", None), torch.nn.Parameter)])


def _kohya_file(path, name: str, width: int):  # noqa: ANN001, ANN202
    g = torch.Generator().manual_seed(0)
    sd = {f"{name}.lora_down.weight": torch.randn(4, width, generator=g), f"{name}.lora_up.weight": torch.randn(8, 4)}
    return write_state_dict(path, sd)


def test_a_lora_of_the_other_family_is_one_line_before_anything_merges(folder, files, make_pipeline, tmp_path):
    sd1, sdxl = make_pipeline(), AnimationPipeline.from_pretrained(folder, tiny_sdxl_motion())
    attn2 = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    cases = [
        (sd1, files["kohya"], r"is an SDXL LoRA \(it has text_encoder_2 / lora_te2 keys\) but the base is SD1\.x; "
         r"use an SD1\.x LoRA, or an SDXL base with it$"),
        (sd1, files["diffusers"], r"is an SDXL LoRA \(it has text_encoder_2 / lora_te2 keys\) but the base is SD1\.x"),
        (sd1, _kohya_file(tmp_path / "xl.safetensors", attn2, 2048),
         r"is an SDXL LoRA \(its cross-attention reads 2048-wide text\) but the base is SD1\.x"),
        (sdxl, _kohya_file(tmp_path / "sd15.safetensors", "lora_unet_down_blocks_1_attentions_0_attn2_to_k", 768),
         r"is an SD1\.x LoRA \(its cross-attention reads 768-wide text\) but the base is SDXL"),
        (sdxl, _kohya_file(tmp_path / "sd2.safetensors", attn2, 1024), r"is an SD2\.x LoRA .*animates SD1\.x and SDXL"),
    ]  # fmt: skip
    for pipe, path, message in cases:
        before = [p.clone() for p in pipe.unet.unet.parameters()] + [p.clone() for p in pipe.text_encoder.parameters()]
        with pytest.raises(ValueError, match=message) as err:
            pipe.add_lora(path)
        after = list(pipe.unet.unet.parameters()) + list(pipe.text_encoder.parameters())
        assert "\n" not in str(err.value) and all(torch.equal(a, b) for a, b in zip(after, before))
        assert pipe.loras.active == {}
