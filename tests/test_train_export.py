"""What a checkpoint exports: motion modules `animatediff generate` loads, and MotionLoRAs in both layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from animatediff.base_model import read_component_config
from animatediff.cli import main
from animatediff.formats.lora import LoraMerger
from animatediff.formats.motion_lora import load_motion_lora
from animatediff.formats.motion_module_files import load_motion_modules, save_motion_modules
from animatediff.models import MotionModules
from animatediff.train.motion_init import init_motion_modules
from animatediff.train.trainer import Trainer
from tests.test_train_synthetic import fresh_accelerate_state, train_config  # noqa: F401 - fixtures
from tests.tiny import tiny_motion

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")


def _generate(base_folder, motion_module, out, extra: list[str] | None = None) -> np.ndarray:
    args = [
        "generate",
        "--base",
        str(base_folder),
        "--motion-module",
        str(motion_module),
        "--prompt",
        "a red square",
        "--frames",
        "4",
        "--steps",
        "2",
        "--seed",
        "0",
        "--output",
        str(out),
        "--quiet",
    ]
    assert main(args + (extra or [])) == 0
    return np.load(out)


def test_exported_module_loads_in_generate_and_changes_its_output(base_folder, tmp_path):
    config = train_config(base_folder, tmp_path / "run", optim={"max_steps": 3, "learning_rate": 1e-2})
    trainer = Trainer(config)
    untrained = save_motion_modules(trainer.unet.motion_modules, tmp_path / "untrained.safetensors")
    checkpoint = trainer.train()["checkpoint"]

    trained = trainer.unet.motion_modules.state_dict()
    for exported in (checkpoint / "motion_module.safetensors", checkpoint / "motion_module_diffusers"):
        loaded = load_motion_modules(exported).state_dict()
        assert loaded.keys() == trained.keys()
        assert all(torch.equal(loaded[k], trained[k]) for k in trained)

    before = _generate(base_folder, untrained, tmp_path / "before.npy")
    after = _generate(base_folder, checkpoint / "motion_module.safetensors", tmp_path / "after.npy")
    again = _generate(base_folder, checkpoint / "motion_module_diffusers", tmp_path / "again.npy")
    assert before.shape == after.shape == (4, 16, 16, 3)
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(again, after, atol=1e-5)


def test_motion_lora_trains_only_adapters_and_exports_both_layouts(base_folder, tmp_path):
    init = save_motion_modules(tiny_motion("v2"), tmp_path / "v2.safetensors")
    config = train_config(
        base_folder,
        tmp_path / "run",
        model={"init_motion_module": str(init)},
        lora={"enabled": True, "rank": 4, "alpha": 8},
        optim={"learning_rate": 1e-2},
    )
    trainer = Trainer(config)
    names = [n for n, p in trainer.unet.motion_modules.named_parameters() if p.requires_grad]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    checkpoint = trainer.train()["checkpoint"]

    live = trainer.unet.motion_modules
    original = load_motion_modules(init)
    base_weights = {k.replace(".base_layer", ""): v for k, v in live.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(base_weights[k], v) for k, v in original.state_dict().items())  # module frozen

    live.eval()
    x = torch.randn(2 * 4, 64, 2, 2)  # (b·f, c, h, w) at the module of up block 0
    block = "up_blocks.0.motion_modules.1"
    expected = live.get_submodule(block)(x, 4)
    for exported in (checkpoint / "motion_lora.safetensors", checkpoint / "motion_lora_diffusers"):
        merged = load_motion_modules(init).eval()
        lora = load_motion_lora(exported)
        assert len(lora.layers) == len(original.named_motion_modules()) * 2 * 4  # × 2 attentions × q, k, v, out
        LoraMerger({"motion_modules": merged}).add("trained", lora)
        torch.testing.assert_close(merged.get_submodule(block)(x, 4), expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(original.get_submodule(block)(x, 4), expected)  # the LoRA did change it

    # End to end: `animatediff generate --motion-lora` takes the exported file.
    plain = _generate(base_folder, init, tmp_path / "plain.npy")
    lora_args = ["--motion-lora", str(checkpoint / "motion_lora.safetensors")]
    with_lora = _generate(base_folder, init, tmp_path / "lora.npy", lora_args)
    assert np.abs(with_lora - plain).max() > 1e-4


def test_v1_module_rebuilt_as_v2_keeps_its_weights(base_folder, tmp_path):
    v1 = tiny_motion("v1")
    path = save_motion_modules(v1, tmp_path / "v1.safetensors")
    config = train_config(
        base_folder, tmp_path / "run", model={"init_motion_module": str(path), "convert_to_version": "v2"}
    )
    modules, origin = init_motion_modules(config.model, read_component_config(base_folder, "unet"))
    assert isinstance(modules, MotionModules) and "rebuilt as v2" in origin
    assert modules.config.version == "v2" and modules.max_frames == 32 and modules.mid_block is not None
    new = modules.state_dict()
    old = v1.state_dict()
    assert all(torch.equal(new[k], old[k]) for k in old)
    assert torch.count_nonzero(new["mid_block.motion_modules.0.temporal_transformer.proj_out.weight"]) == 0


def test_diffusers_layout_lora_loads_into_diffusers_animatediff_unet():
    from animatediff.models import inflate_unet
    from animatediff.train.lora import add_motion_lora, diffusers_lora_state_dict
    from tests.diffusers_reference import diffusers_motion_unet
    from tests.tiny import tiny_unet

    modules = tiny_motion("v2")
    reference = diffusers_motion_unet(tiny_unet(), modules)
    add_motion_lora(modules, rank=4, alpha=8)
    with torch.no_grad():
        for name, p in modules.named_parameters():
            if "lora_B" in name:  # as if trained: PEFT starts them at zero
                p.normal_(0, 0.1)
    ours = inflate_unet(tiny_unet(), modules).eval()
    x, ctx = torch.randn(1, 4, 4, 8, 8), torch.randn(1, 77, 32)
    with torch.no_grad():
        expected = ours(x, 10, ctx)
        without = reference(x, 10, encoder_hidden_states=ctx.repeat_interleave(4, 0)).sample
        reference.load_lora_adapter(diffusers_lora_state_dict(modules.state_dict(), 2.0), prefix="unet")
        got = reference(x, 10, encoder_hidden_states=ctx.repeat_interleave(4, 0)).sample
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert (without - expected).abs().max() > 1e-3
