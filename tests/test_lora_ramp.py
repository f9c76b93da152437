"""A merged LoRA's scale ramped over the steps (`lora_ramps=[LoraRamp(...)]`, a run entry's `lora_configs` item with a
`ramp`, prompt-travel's `lcm_map` with our `lcm_lora`): diffusers' AnimateDiffPipeline with the LoRA loaded by its own
loader and its adapter scale set before every step, the scale put back after the call, and bad input as one line."""

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from animatediff.errors import InputError
from animatediff.pipeline.lora_ramp import LoraRamp
from animatediff.prompt_entries import load_prompt_config
from tests.diffusers_reference import diffusers_pipeline
from tests.test_prompt_config import assets  # noqa: F401 - the fixture: a motion module, a LoRA, a MotionLoRA
from tests.test_prompt_travel_config import document

PROMPT = "a red circle moving left"
ARGS = dict(num_frames=4, height=16, width=16, num_inference_steps=4, guidance_scale=7.5)
LAYERS = {
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q": (32, 32),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v": (32, 32),
    "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2": (32, 128),
}


def peft_lora(path, seed: int = 0):  # noqa: ANN001, ANN201
    """A random rank-4 LoRA on a few UNet layers, in diffusers' PEFT layout (unet.<module>.lora_A/B.weight)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for module, (out, inp) in LAYERS.items():
        sd[f"unet.{module}.lora_A.weight"] = torch.randn(4, inp, generator=g) * 0.3
        sd[f"unet.{module}.lora_B.weight"] = torch.randn(out, 4, generator=g) * 0.3
    save_file(sd, str(path))
    return sd


def test_frames_equal_diffusers_with_its_adapter_scale_set_before_every_step(make_pipeline, one_thread, tmp_path):
    pytest.importorskip("peft")
    pipe = make_pipeline("v2")
    ref = diffusers_pipeline(pipe)  # the weights before ours merge the LoRA
    sd = peft_lora(tmp_path / "lcm.safetensors")
    name = pipe.add_lora(tmp_path / "lcm.safetensors", 1.0)
    ramp = LoraRamp(name, start_scale=0.2, end_scale=1.0, gradient_start=0.25, gradient_end=0.75)
    assert [ramp.scale_at(i, 4) for i in range(4)] == pytest.approx([0.2, 0.6, 1.0, 1.0])
    got = pipe(PROMPT, "blurry", seed=7, progress=False, lora_ramps=[ramp], **ARGS)
    assert pipe.loras.active[name] == 1.0  # put back

    ref.load_lora_weights({k: v.clone() for k, v in sd.items()}, adapter_name="lcm")
    ref.set_adapters(["lcm"], [ramp.scale_at(0, 4)])

    def next_scale(reference, i, t, kwargs):  # noqa: ANN001, ANN202
        if i + 1 < 4:
            reference.set_adapters(["lcm"], [ramp.scale_at(i + 1, 4)])
        return kwargs

    expected = ref(PROMPT, negative_prompt="blurry", generator=torch.Generator().manual_seed(7), output_type="np",
                   callback_on_step_end=next_scale, **ARGS).frames  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    merged = pipe(PROMPT, "blurry", seed=7, progress=False, **ARGS)  # the LoRA at 1 throughout
    assert np.abs(got - merged).max() > 1e-3


def test_bad_ramps_are_one_line(make_pipeline):
    pipe = make_pipeline("v2")
    with pytest.raises(InputError, match=r"LoRA ramp: no LoRA named 'image:x' is merged; merged: \[\]"):
        pipe(PROMPT, lora_ramps=[LoraRamp("image:x")], progress=False, **ARGS)
    with pytest.raises(InputError, match="need 0 ≤ gradient_start ≤ gradient_end ≤ 1"):
        LoraRamp("x", gradient_start=0.8, gradient_end=0.2)


def test_prompt_travels_lcm_map_is_a_ramped_lora(assets):  # noqa: F811
    config = assets / "prompt_travel.json"
    lcm = {"enable": True, "start_scale": 0.15, "end_scale": 0.75, "gradient_start": 0.2, "gradient_end": 0.75}
    config.write_text(json.dumps(document(lcm_map=lcm, lcm_lora="lcm.safetensors")))
    (entry,), _ = load_prompt_config(config)
    ramp = {k: v for k, v in lcm.items() if k != "enable"}
    assert entry.lora_configs[-1] == {"path": "lcm.safetensors", "alpha": 1.0, "ramp": ramp}
    assert entry.scheduler == "lcm"  # prompt-travel swaps in the LCM scheduler whenever lcm_map is on
    from animatediff.pipeline.lora_ramp import entry_lora_ramps

    assert entry_lora_ramps(entry.lora_configs, lambda p: f"/m/{p}") == [LoraRamp("image:/m/lcm.safetensors", **ramp)]
    config.write_text(json.dumps(document(lcm_map=lcm)))
    with pytest.raises(InputError, match="give its file as lcm_lora"):
        load_prompt_config(config)
    config.write_text(json.dumps(document(lcm_map={"enable": False}, lcm_lora="lcm.safetensors")))
    (entry,), _ = load_prompt_config(config)
    assert all("ramp" not in c for c in entry.lora_configs) and entry.scheduler == "ddim"
    bad = [{"path": "a.safetensors", "ramp": {"start_scale": "low"}}]
    (assets / "bad.json").write_text(
        json.dumps([{"motion_module": "mm.safetensors", "prompt": ["a"], "lora_configs": bad}])
    )
    with pytest.raises(InputError, match=re.escape("lora_configs ramp: LoRA ramp start_scale must be a number")):
        load_prompt_config(assets / "bad.json")
