"""The temporal-convolution motion module (`MotionModuleConfig.design="convolution"`, the paper's module-design
ablation): identity when fresh, about the transformer's size, frames only, its official files, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from animatediff.cli import main
from animatediff.errors import InputError
from animatediff.formats.motion_module_files import (
    CONFIG_KEY,
    convert_motion_module,
    load_motion_modules,
    motion_state_dict,
    save_motion_modules,
)
from animatediff.formats.state_dicts import write_state_dict
from animatediff.models import MotionModule, MotionModuleConfig, MotionModules, inflate_unet
from animatediff.models.free_noise import AttentionWindows
from animatediff.pipeline import AnimationPipeline
from animatediff.train.config import ModelConfig, ScratchMotionConfig, config_from_dict
from animatediff.train.motion_init import init_motion_modules
from animatediff.train.trainer import Trainer
from tests.test_train_synthetic import fresh_accelerate_state, train_config  # noqa: F401 - fixtures
from tests.tiny import CHANNELS, tiny_motion, tiny_unet

SD15 = (320, 640, 1280, 1280)
TINY_UNET_CONFIG = {"block_out_channels": list(CHANNELS), "layers_per_block": 2}


def conv_motion(version: str = "v3", seed: int = 1, random: bool = True) -> MotionModules:
    """Tiny temporal-convolution modules for `tiny_unet`; `random`: every weight drawn, proj_out included."""
    config = MotionModuleConfig(
        block_out_channels=CHANNELS,
        use_mid_block=version == "v2",
        max_frames=24 if version == "v1" else 32,
        version=version,
        design="convolution",
    )
    torch.manual_seed(seed)
    modules = MotionModules(config)
    if random:
        with torch.no_grad():
            for p in modules.parameters():
                p.normal_(0, 0.2)
    return modules.eval()


def random_module(dim: int = 32, num_blocks: int = 1) -> MotionModule:
    torch.manual_seed(0)
    module = MotionModule(dim, num_blocks=num_blocks, design="convolution")
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.2)
    return module.eval()


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def assert_same_weights(a: MotionModules, b: MotionModules) -> None:
    sa, sb = motion_state_dict(a), motion_state_dict(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


# ------------------------------------------------------------------------------------------------- the module


def test_a_fresh_convolution_module_leaves_the_unet_output_bit_for_bit():
    fresh = conv_motion(random=False)
    assert {m.design for _, m in fresh.named_motion_modules()} == {"convolution"}
    assert all(".temporal_convolution." in k for k in fresh.state_dict())
    anim = inflate_unet(tiny_unet(), fresh)
    torch.manual_seed(0)
    x, context = torch.randn(2, 4, 5, 8, 8), torch.randn(2, 7, 32)
    with torch.no_grad():
        with_modules = anim(x, 10, context)
        anim.motion_enabled = False
        without = anim(x, 10, context)
        trained = inflate_unet(tiny_unet(), conv_motion())(x, 10, context)  # the hooks do run the modules
    assert torch.equal(with_modules, without)
    assert not torch.allclose(trained, without, atol=1e-3)


def _count(channels: tuple[int, ...], design: str, blocks: int = 1) -> int:
    with torch.device("meta"):  # shapes only: SD1.5's ~0.5 B parameters are never allocated
        config = MotionModuleConfig(block_out_channels=channels, num_transformer_blocks=blocks, design=design)
        return sum(p.numel() for p in MotionModules(config).parameters())


@pytest.mark.parametrize(
    "channels, blocks, ratio",
    [(CHANNELS, 1, 1.0801), (SD15, 1, 1.0904), (SD15, 2, 0.9995)],
    ids=["tiny", "sd15", "sd15-2-blocks"],
)
def test_the_convolution_has_about_the_transformers_parameter_count(channels, blocks, ratio):
    convolution, transformer = _count(channels, "convolution", blocks), _count(channels, "transformer", blocks)
    assert convolution / transformer == pytest.approx(ratio, abs=1e-4)
    assert abs(convolution / transformer - 1) < 0.15
    if channels == SD15 and blocks == 1:  # the released v3 shape: 417.1 M parameters against 454.8 M
        assert (transformer, convolution) == (417_137_600, 454_832_000)


@pytest.mark.parametrize("c", [32, 320, 1280])
def test_per_module_counts_follow_the_docstrings_formulas(c):
    with torch.device("meta"):
        counts = {
            d: sum(p.numel() for p in MotionModule(c, design=d).parameters()) for d in ("transformer", "convolution")
        }
    assert counts == {"transformer": 22 * c * c + 21 * c, "convolution": 24 * c * c + 10 * c}


@pytest.mark.parametrize("num_blocks", [1, 2])
def test_a_changed_frame_reaches_only_the_frames_within_the_kernels_reach(num_blocks):
    module, f = random_module(num_blocks=num_blocks), 16
    reach = module.temporal_convolution.reach
    assert reach == 2 + 2 * num_blocks  # one frame per kernel-3 convolution: proj_in, 2 per block, proj_out
    torch.manual_seed(1)
    x = torch.randn(2 * f, 32, 3, 3)  # two videos of f frames, folded
    changed = x.clone()
    changed[7] += torch.randn(32, 3, 3)  # frame 7 of the first video
    with torch.no_grad():
        out, out_changed = module(x, f), module(changed, f)
    differs = [not torch.equal(a, b) for a, b in zip(out, out_changed)]
    assert differs == [abs(i - 7) <= reach for i in range(f)] + [False] * f


def test_each_pixel_is_convolved_over_frames_alone():
    """Permuting pixels commutes with the module: nothing mixes positions (the GroupNorm's statistics are the same
    whatever the order of the pixels they span)."""
    module, f = random_module(), 6
    torch.manual_seed(2)
    x = torch.randn(f, 32, 4, 4)
    order = torch.randperm(16)
    permute = lambda t: t.flatten(2)[:, :, order].unflatten(2, (4, 4))  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(module(permute(x), f), permute(module(x, f)), rtol=1e-5, atol=1e-5)


def test_motion_scale_gradient_checkpointing_and_chunks_work_on_the_convolution():
    torch.manual_seed(0)
    x, context = torch.randn(1, 4, 4, 8, 8), torch.randn(1, 7, 32)
    anim = inflate_unet(tiny_unet(), conv_motion())
    with torch.no_grad():
        full = anim(x, 10, context)
        anim.motion_enabled = False
        off = anim(x, 10, context)
        anim.motion_enabled = True
        with anim.scaled_motion(0):
            assert torch.equal(anim(x, 10, context), off)
        with anim.scaled_motion({"down": 0.5}):
            half = anim(x, 10, context)
        for _, module in anim.motion_modules.named_motion_modules():
            module.set_ff_chunk(7)  # not a divisor of the 4 × 8 × 8 sequences at the first level
        torch.testing.assert_close(anim(x, 10, context), full, rtol=1e-5, atol=1e-5)  # other GEMM blocking
    assert not torch.allclose(half, full, atol=1e-4) and not torch.allclose(half, off, atol=1e-4)
    with pytest.raises(InputError, match="FreeNoise.*temporal-convolution") as err:
        anim.set_free_noise(AttentionWindows(4, 2))
    one_line(err)

    grads = []
    for checkpointing in (False, True):
        anim = inflate_unet(tiny_unet().requires_grad_(False), conv_motion().train())
        if checkpointing:
            anim.enable_gradient_checkpointing()
        with anim.fold_frames(4):
            anim(x, 10, context).square().mean().backward()
        grads.append([p.grad for p in anim.motion_modules.parameters()])
    assert all(g is not None and g.abs().sum() > 0 for g in grads[0])
    for plain, checkpointed in zip(*grads):
        torch.testing.assert_close(checkpointed, plain, rtol=1e-5, atol=1e-7)


def test_a_bad_design_is_refused_in_one_line():
    with pytest.raises(InputError, match="unknown motion module design 'lstm'.*transformer, convolution") as err:
        MotionModuleConfig(block_out_channels=CHANNELS, design="lstm")
    one_line(err)
    with pytest.raises(InputError, match="unknown motion module design 'lstm'"):
        MotionModule(32, design="lstm")


# ---------------------------------------------------------------------------------------------------- files


@pytest.mark.parametrize("name", ["mm.safetensors", "mm.ckpt"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_official_file_round_trip_is_bit_identical(tmp_path, name, version):
    mm = conv_motion(version)
    path = save_motion_modules(mm, tmp_path / name, layout="official")
    loaded = load_motion_modules(path)
    assert loaded.config == mm.config and loaded.config.design == "convolution"
    assert_same_weights(mm, loaded)
    assert_same_weights(mm, load_motion_modules(save_motion_modules(loaded, tmp_path / f"again-{name}")))


def test_a_file_without_its_config_is_told_by_its_keys(tmp_path):
    mm = conv_motion("v2")
    write_state_dict(tmp_path / "bare.safetensors", motion_state_dict(mm))  # no embedded config
    loaded = load_motion_modules(tmp_path / "bare.safetensors")
    assert loaded.config.design == "convolution" and loaded.config.use_mid_block
    assert_same_weights(mm, loaded)


def test_generate_loads_a_convolution_file(tmp_path, base_folder):
    mm = conv_motion()
    path = save_motion_modules(mm, tmp_path / "conv.safetensors")
    assert_same_weights(mm, AnimationPipeline.from_pretrained(base_folder, path).unet.motion_modules)
    out = tmp_path / "out.npy"
    args = ["--prompt", "a fox", "--frames", "4", "--steps", "2", "--seed", "1", "--output", str(out)]
    assert main(["generate", "--base", str(base_folder), "--motion-module", str(path), "--quiet", *args]) == 0
    frames = np.load(out)
    assert frames.shape == (4, 16, 16, 3) and np.isfinite(frames).all()


def test_the_diffusers_layout_is_refused_in_one_line(tmp_path):
    mm = conv_motion()
    with pytest.raises(InputError, match="convolution motion module has no diffusers MotionAdapter layout") as err:
        save_motion_modules(mm, tmp_path / "folder", layout="diffusers")
    one_line(err)
    path = save_motion_modules(mm, tmp_path / "conv.safetensors")
    with pytest.raises(InputError, match="no diffusers MotionAdapter layout"):
        convert_motion_module(path, tmp_path / "folder")
    assert not (tmp_path / "folder").exists()


def test_mixed_and_unknown_key_sets_keep_their_one_line_errors(tmp_path):
    conv, transformer = motion_state_dict(conv_motion()), motion_state_dict(tiny_motion())
    prefix = "up_blocks.1.motion_modules.2."
    mixed = {k: v for k, v in conv.items() if not k.startswith(prefix)}
    mixed.update({k: v for k, v in transformer.items() if k.startswith(prefix)})  # one transformer module among them
    write_state_dict(tmp_path / "mixed.safetensors", mixed)
    with pytest.raises(InputError, match="do not match the expected layout.*missing.*unexpected") as err:
        load_motion_modules(tmp_path / "mixed.safetensors")
    one_line(err)
    write_state_dict(tmp_path / "junk.safetensors", {"foo.weight": torch.zeros(2)})
    with pytest.raises(InputError, match="not a motion module in any layout") as err:
        load_motion_modules(tmp_path / "junk.safetensors")
    one_line(err)
    stated = {CONFIG_KEY: json.dumps(tiny_motion().config.to_dict())}  # says transformer over convolution weights
    write_state_dict(tmp_path / "contradicts.safetensors", conv, stated)
    with pytest.raises(InputError, match="embedded config says a transformer.*convolution") as err:
        load_motion_modules(tmp_path / "contradicts.safetensors")
    one_line(err)


# ------------------------------------------------------------------------------------------------- training


def test_a_run_starts_from_a_convolution_file_or_a_fresh_convolution(tmp_path):
    mm = conv_motion("v3")
    path = save_motion_modules(mm, tmp_path / "conv.safetensors")
    modules, where = init_motion_modules(ModelConfig(base="b", init_motion_module=str(path)), TINY_UNET_CONFIG)
    assert modules.config.design == "convolution" and "v3 motion module from" in where
    assert_same_weights(mm, modules)
    rebuilt, _ = init_motion_modules(
        ModelConfig(base="b", init_motion_module=str(path), convert_to_version="v2"), TINY_UNET_CONFIG
    )
    assert rebuilt.mid_block is not None and rebuilt.mid_block.motion_modules[0].design == "convolution"
    carried = rebuilt.state_dict()
    assert all(torch.equal(v, carried[k]) for k, v in mm.state_dict().items())
    fresh, where = init_motion_modules(
        ModelConfig(base="b", scratch=ScratchMotionConfig(design="convolution")), TINY_UNET_CONFIG
    )
    assert fresh.config.design == "convolution" and where == "new v3 convolution motion module (zero proj_out)"


@pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")
def test_the_trainer_trains_a_convolution_and_keeps_the_base_frozen(base_folder, tmp_path):
    config = train_config(
        base_folder,
        tmp_path / "run",
        model={"scratch": {"design": "convolution"}},
        optim={"max_steps": 4},
        gradient_checkpointing=True,
    )
    trainer = Trainer(config)
    motion = trainer.unet.motion_modules
    assert motion.config.design == "convolution"
    assert {id(p) for p in trainer.trainable} == {id(p) for p in motion.parameters()}
    frozen = {
        name: {k: v.clone() for k, v in part.state_dict().items()}
        for name, part in (("unet", trainer.unet.unet), ("vae", trainer.vae), ("text_encoder", trainer.text_encoder))
    }
    before = {k: v.clone() for k, v in motion.state_dict().items()}
    # Three steps, ending before the final checkpoint: its export writes a diffusers folder too (train/export.py).
    result = trainer.train(stop_after=3)
    assert result["step"] == 3 and np.isfinite(result["loss"])
    for name, part in (("unet", trainer.unet.unet), ("vae", trainer.vae), ("text_encoder", trainer.text_encoder)):
        after = part.state_dict()
        assert all(torch.equal(frozen[name][k], after[k]) for k in frozen[name]), f"{name} changed"
    after = motion.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")
def test_a_convolution_runs_checkpoint_exports_its_official_file(base_folder, tmp_path):
    config = train_config(base_folder, tmp_path / "run", model={"scratch": {"design": "convolution"}})
    checkpoint = Trainer(config).train()["checkpoint"]
    exported = load_motion_modules(checkpoint / "motion_module.safetensors")
    assert exported.config.design == "convolution"
    assert not (checkpoint / "motion_module_diffusers").exists()  # diffusers has no temporal convolution


def test_a_bad_scratch_design_is_named_with_its_choices():
    values = {"model": {"base": "b", "scratch": {"design": "lstm"}}, "data": {"kind": "synthetic"}}
    with pytest.raises(InputError, match="model.scratch.design: 'lstm' is not one of 'transformer', 'convolution'"):
        config_from_dict(values)
