import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from animatediff.formats.motion_lora import load_adapter_lora, load_motion_lora, save_motion_lora
from animatediff.formats.motion_module_files import official_to_diffusers
from animatediff.models import inflate_unet
from tests.tiny import tiny_motion, tiny_unet

OFFICIAL_KEY = re.compile(
    r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.\d+\.temporal_transformer\.transformer_blocks\.0\."
    r"attention_blocks\.[01]\.processor\.to_(q|k|v|out)_lora\.(down|up)\.weight$"
)
RUN = dict(num_frames=2, num_inference_steps=1, guidance_scale=1.0, seed=3, progress=False)


def _random_lora(targets: list[str], shapes: dict[str, torch.Size], rank: int, seed: int) -> dict[str, tuple]:
    g = torch.Generator().manual_seed(seed)
    return {
        t: (torch.randn(rank, shapes[t][1], generator=g) * 0.3, torch.randn(shapes[t][0], rank, generator=g) * 0.3)
        for t in targets
    }


def _projections(module: torch.nn.Module, attention: str) -> list[str]:
    pattern = re.compile(rf"{attention}\.(to_q|to_k|to_v|to_out\.0)\.weight$")
    return [k for k in module.state_dict() if pattern.search(k)]


@pytest.fixture
def pipe(make_pipeline):
    return make_pipeline("v2")


@pytest.fixture
def motion_lora(pipe):
    mm = pipe.unet.motion_modules
    targets = _projections(mm, r"attention_blocks\.[01]")
    return _random_lora(targets, {k: v.shape for k, v in mm.state_dict().items()}, rank=4, seed=0)


def test_official_layout_every_key_matched_and_merged(pipe, motion_lora, tmp_path):
    path = save_motion_lora(motion_lora, tmp_path / "zoom.safetensors")
    keys = list(load_file(path))
    # 11 modules in the tiny v2 set × 2 attentions × 4 projections × (down, up)
    assert len(keys) == 11 * 2 * 4 * 2 and all(OFFICIAL_KEY.match(k) for k in keys)

    before = {k: v.clone() for k, v in pipe.unet.motion_modules.state_dict().items()}
    base_video = pipe("a car", **RUN)
    pipe.add_lora(path, 0.6, kind="motion", name="zoom")
    assert len(pipe.loras._entries["zoom"].layers) == len(motion_lora)  # every key pair found its weight
    after = pipe.unet.motion_modules.state_dict()
    for target, (down, up) in motion_lora.items():
        # official rule: W + alpha · up @ down, no rank scaling
        torch.testing.assert_close(after[target], before[target] + 0.6 * up @ down)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == set(motion_lora)
    lora_video = pipe("a car", **RUN)
    assert np.abs(lora_video - base_video).max() > 1e-3

    pipe.loras.remove("zoom")
    assert all(torch.equal(before[k], v) for k, v in pipe.unet.motion_modules.state_dict().items())
    np.testing.assert_array_equal(pipe("a car", **RUN), base_video)


def test_export_folds_training_alpha(motion_lora, tmp_path):
    target, (down, up) = next(iter(motion_lora.items()))
    sd = load_file(save_motion_lora({target: (down, up)}, tmp_path / "m.safetensors", alpha=0.5))
    key = target.replace(".to_q.weight", ".processor.to_q_lora.up.weight").replace(
        ".to_k.weight", ".processor.to_k_lora.up.weight"
    )
    key = key.replace(".to_v.weight", ".processor.to_v_lora.up.weight").replace(
        ".to_out.0.weight", ".processor.to_out_lora.up.weight"
    )
    torch.testing.assert_close(sd[key], up * 0.5)
    with pytest.raises(ValueError, match="not a motion-module attention projection"):
        save_motion_lora({"down_blocks.0.attentions.0.proj_in.weight": (down, up)}, tmp_path / "x.safetensors")


def test_diffusers_layout_merges_like_the_official_one(make_pipeline, motion_lora, tmp_path):
    official = make_pipeline("v2")
    official.add_lora(save_motion_lora(motion_lora, tmp_path / "o.safetensors"), 0.8, kind="motion")
    peft = {}
    for target, (down, up) in motion_lora.items():
        name = next(iter(official_to_diffusers({target: down}))).removesuffix(".weight")
        peft[f"unet.{name}.lora_A.weight"] = down
        peft[f"unet.{name}.lora_B.weight"] = up
    assert all("temporal_transformer" not in k and "attn1" in k or "attn2" in k for k in peft)
    save_file(peft, tmp_path / "d.safetensors")
    diffusers = make_pipeline("v2")
    diffusers.add_lora(tmp_path / "d.safetensors", 0.8, kind="motion")
    a, b = official.unet.motion_modules.state_dict(), diffusers.unet.motion_modules.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_key_that_matches_nothing_is_an_error(pipe, motion_lora, tmp_path):
    target, pair = next(iter(motion_lora.items()))
    wrong = {target.replace("down_blocks.0.", "down_blocks.7."): pair, **motion_lora}
    path = save_motion_lora(wrong, tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=rf"{len(motion_lora)} of {len(wrong)} LoRA layers match"):
        pipe.add_lora(path, kind="motion")
    # A v2 MotionLoRA on v3 modules: the mid-block layers have nothing to merge into.
    v3 = pipe.__class__(pipe.tokenizer, pipe.text_encoder, pipe.vae, inflate_unet(tiny_unet(), tiny_motion("v3")))
    mid = sum(k.startswith("mid_block.") for k in motion_lora)
    with pytest.raises(ValueError, match=rf"{len(motion_lora) - mid} of {len(motion_lora)} LoRA layers match"):
        v3.add_lora(save_motion_lora(motion_lora, tmp_path / "v2.safetensors"), kind="motion")


def _adapter(pipe, tmp_path, rank: int = 8) -> tuple:
    unet = pipe.unet.unet
    targets = _projections(unet, r"attentions\.\d+\.transformer_blocks\.0\.attn[12]")
    pairs = _random_lora(targets, {k: v.shape for k, v in unet.state_dict().items()}, rank, seed=1)
    sd = {}
    for target, (down, up) in pairs.items():
        m = re.match(r"(.*)\.(to_q|to_k|to_v|to_out)(\.0)?\.weight$", target)
        sd[f"{m.group(1)}.processor.{m.group(2)}_lora.down.weight"] = down
        sd[f"{m.group(1)}.processor.{m.group(2)}_lora.up.weight"] = up
    torch.save({"state_dict": sd}, tmp_path / "v3_adapter.ckpt")
    return tmp_path / "v3_adapter.ckpt", pairs


def test_v3_domain_adapter_on_spatial_attention(make_pipeline, tmp_path):
    pipe = make_pipeline("v3")
    path, pairs = _adapter(pipe, tmp_path)
    assert (
        len(pairs) == 6 * 2 * 4
    )  # 6 spatial transformers in the tiny UNet (2 down, 1 mid, 3 up) × attn1/attn2 × q, k, v, out
    before = {k: v.clone() for k, v in pipe.unet.unet.state_dict().items()}
    base_video = pipe("a car", **RUN)
    name = pipe.add_lora(path, 0.75, kind="adapter")
    after = pipe.unet.unet.state_dict()
    for target, (down, up) in pairs.items():
        torch.testing.assert_close(after[target], before[target] + 0.75 * up @ down)
    assert {k for k in before if not torch.equal(before[k], after[k])} == set(pairs)
    assert np.abs(pipe("a car", **RUN) - base_video).max() > 1e-3
    pipe.loras.remove(name)
    np.testing.assert_array_equal(pipe("a car", **RUN), base_video)


def test_kinds_are_not_mixed_up(pipe, motion_lora, tmp_path):
    motion = save_motion_lora(motion_lora, tmp_path / "m.safetensors")
    adapter, _ = _adapter(pipe, tmp_path)
    with pytest.raises(ValueError, match="not a domain adapter"):
        load_adapter_lora(motion)
    with pytest.raises(ValueError, match="not a MotionLoRA"):
        load_motion_lora(adapter)


def test_diffusers_format_motion_lora_matches_diffusers_own_loading(make_pipeline, motion_lora, tmp_path):
    """A PEFT-keyed motion LoRA through diffusers' AnimateDiffPipeline.load_lora_weights + fuse_lora: same video."""
    pytest.importorskip("peft")

    from tests.diffusers_reference import diffusers_pipeline

    peft = {}
    for target, (down, up) in motion_lora.items():
        name = next(iter(official_to_diffusers({target: down}))).removesuffix(".weight")
        peft[f"unet.{name}.lora_A.weight"], peft[f"unet.{name}.lora_B.weight"] = down, up
    save_file(peft, tmp_path / "motion_lora.safetensors")

    ours = make_pipeline("v2")
    reference = diffusers_pipeline(ours)
    reference.load_lora_weights({k: v.clone() for k, v in peft.items()}, adapter_name="pan")
    reference.fuse_lora(lora_scale=0.8)
    ours.add_lora(tmp_path / "motion_lora.safetensors", 0.8, kind="motion")

    args = dict(prompt="a car", num_frames=4, height=16, width=16, num_inference_steps=2, guidance_scale=7.5)
    expected = reference(**args, generator=torch.Generator("cpu").manual_seed(3), output_type="np").frames
    got = ours(**args, seed=3, progress=False)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    ours.loras.clear()
    assert np.abs(ours(**args, seed=3, progress=False) - got).max() > 1e-3  # the LoRA mattered
