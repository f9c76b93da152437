import numpy as np
import torch
from safetensors.torch import save_file

from animatediff.base_model import load_base
from animatediff.formats import load_motion_modules, save_motion_modules
from animatediff.formats.motion_lora import save_motion_lora
from animatediff.model_cache import ModelCache, PipelineSpec
from animatediff.pipeline import AnimationPipeline
from tests.ldm_checkpoint import save_ldm_checkpoint
from tests.tiny import tiny_motion, tiny_text_encoder, tiny_unet, tiny_vae

TARGET = "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight"
IMAGE = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v"


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cache_reloads_only_what_changed_and_switches_loras_exactly(base_folder, tokenizer, tmp_path):
    g = torch.Generator().manual_seed(0)
    a = str(save_motion_modules(tiny_motion("v2", seed=1), tmp_path / "a.safetensors"))
    b = str(save_motion_modules(tiny_motion("v2", seed=4), tmp_path / "b.safetensors"))
    down, up = torch.randn(4, 64, generator=g), torch.randn(64, 4, generator=g)
    pan = str(save_motion_lora({TARGET: (down, up)}, tmp_path / "pan.safetensors"))
    save_file({f"{IMAGE}.lora_down.weight": torch.randn(4, 32), f"{IMAGE}.lora_up.weight": torch.randn(32, 4)},
              tmp_path / "style.safetensors")  # fmt: skip
    style = str(tmp_path / "style.safetensors")
    dreambooth = tmp_path / "db.safetensors"
    save_ldm_checkpoint(dreambooth, tiny_unet(seed=5), tiny_vae(seed=6), tiny_text_encoder(len(tokenizer), 7))
    base = str(base_folder)
    cache = ModelCache()

    pipe = cache.pipeline(PipelineSpec(base, a, loras=(("image", style, 0.7), ("motion", pan, 0.5))))
    assert cache.loads == {"base": 1, "motion_module": 1, "lora": 2}

    # Another motion module, the image LoRA dropped: same pipeline object, base untouched on disk.
    same = cache.pipeline(PipelineSpec(base, b, loras=(("motion", pan, 0.5),)))
    assert same is pipe and cache.loads == {"base": 1, "motion_module": 2, "lora": 2}
    assert _equal(pipe.unet.unet, load_base(base_folder).unet)  # image LoRA unmerged exactly
    assert _equal(cache._motion[a], load_motion_modules(a))  # A got its MotionLoRA back out
    fresh_b = load_motion_modules(b).state_dict()
    torch.testing.assert_close(pipe.unet.motion_modules.state_dict()[TARGET], fresh_b[TARGET] + 0.5 * up @ down)
    assert pipe.unet.motion_modules is cache._motion[b]

    # A personalized checkpoint is a new base; motion module A comes from memory.
    pipe = cache.pipeline(PipelineSpec(base, a, dreambooth=str(dreambooth)))
    assert cache.loads == {"base": 2, "dreambooth": 1, "motion_module": 2, "lora": 2}
    assert _equal(cache._motion[b], load_motion_modules(b))
    reference = AnimationPipeline.from_pretrained(base_folder, a, dreambooth=dreambooth)
    run = dict(num_frames=2, num_inference_steps=1, seed=2, progress=False)
    np.testing.assert_array_equal(pipe("a dog", **run), reference("a dog", **run))


def test_control_models_are_kept_per_base_least_recently_used_first(base_folder, tmp_path):
    a = str(save_motion_modules(tiny_motion("v2", seed=1), tmp_path / "a.safetensors"))
    cache = ModelCache(max_control_models=2)
    cache.pipeline(PipelineSpec(str(base_folder), a))
    made = []

    def load(name: str):  # noqa: ANN202
        return lambda: made.append(name) or torch.nn.Linear(1, 1)

    first = cache.control_model(("controlnet", "x"), load("x"))
    assert cache.control_model(("controlnet", "x"), load("x")) is first and made == ["x"]
    cache.control_model(("sparsectrl", "y"), load("y"))
    cache.control_model(("controlnet", "x"), load("x"))  # x used last: y goes when z comes
    cache.control_model(("controlnet", "z"), load("z"))
    assert cache.control_model(("controlnet", "x"), load("x")) is first and made == ["x", "y", "z"]
    assert cache.loads["control"] == 3

    # Another base: each model was checked against the old one, so they are read again.
    cache.pipeline(PipelineSpec(str(base_folder), a, dreambooth=None, loras=()))  # same base: kept
    assert cache.control_model(("controlnet", "x"), load("x")) is first
    cache._base_key = ("elsewhere", None)  # as if another base had been loaded last
    cache.pipeline(PipelineSpec(str(base_folder), a))
    assert cache.control_model(("controlnet", "x"), load("x")) is not first and made == ["x", "y", "z", "x"]
