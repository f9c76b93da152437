"""Domain adapter mode (paper Sec. 4.1): a LoRA on the image UNet's spatial attention trained on single frames, the
base frozen; exported in the official v3 adapter layout and as a diffusers LoRA, both taken by `--adapter-lora`;
the motion stage then trains over base + adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from animatediff.errors import InputError
from animatediff.formats.lora import LoraMerger
from animatediff.formats.motion_lora import load_adapter_lora
from animatediff.formats.state_dicts import read_weights
from animatediff.train.adapter import ADAPTER_FILE, DIFFUSERS_FOLDER, DIFFUSERS_LORA_FILE, pick_frames
from animatediff.train.trainer import Trainer
from tests.test_train_export import _generate
from tests.test_train_synthetic import fresh_accelerate_state, train_config  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")


def adapter_config(base_folder, run_dir, **sections):
    adapter = {"enabled": True, "rank": 4, "alpha": 8, **sections.pop("adapter", {})}
    optim = sections.pop("optim", {"max_steps": 3, "learning_rate": 1e-2})
    return train_config(base_folder, run_dir, adapter=adapter, optim=optim, **sections)


def _unet_weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.unet.unet.state_dict().items()}


def test_only_the_adapter_trains_and_the_base_and_motion_modules_stay_bit_identical(base_folder, tmp_path):
    trainer = Trainer(adapter_config(base_folder, tmp_path / "run"))
    assert trainer.unet.motion_enabled is False
    trained_names = {n for n, p in trainer.unet.named_parameters() if p.requires_grad}
    assert trained_names and all(".lora_A." in n or ".lora_B." in n for n in trained_names)
    assert all(".attn1." in n or ".attn2." in n for n in trained_names)
    assert all(p.dtype == torch.float32 for p in trainer.trainable)
    before = _unet_weights(trainer)
    motion_before = {k: v.clone() for k, v in trainer.unet.motion_modules.state_dict().items()}
    vae_before = {k: v.clone() for k, v in trainer.vae.state_dict().items()}
    trainer.train()
    after = _unet_weights(trainer)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(".lora_B." in k or ".lora_A." in k for k in changed)
    assert all(torch.equal(v, trainer.unet.motion_modules.state_dict()[k]) for k, v in motion_before.items())
    assert all(torch.equal(v, trainer.vae.state_dict()[k]) for k, v in vae_before.items())


def test_one_frame_of_each_clip_is_drawn():
    clips = torch.arange(2 * 5).float().view(2, 5, 1, 1, 1).expand(2, 5, 3, 4, 4)
    picked = pick_frames(clips, torch.Generator().manual_seed(0))
    assert picked.shape == (2, 1, 3, 4, 4)
    assert picked[0, 0, 0, 0, 0] in range(0, 5) and picked[1, 0, 0, 0, 0] in range(5, 10)


def test_exports_load_as_adapter_lora_and_merge_to_what_was_trained(base_folder, tmp_path):
    trainer = Trainer(adapter_config(base_folder, tmp_path / "run"))
    checkpoint = trainer.train()["checkpoint"]
    official = checkpoint / ADAPTER_FILE
    diffusers = checkpoint / DIFFUSERS_FOLDER / DIFFUSERS_LORA_FILE
    keys = list(read_weights(official, "adapter")[0])
    assert all(".processor.to_" in k and "_lora." in k for k in keys)  # the official v3 adapter layout
    assert any(".attn1.processor." in k for k in keys) and any(".attn2.processor." in k for k in keys)
    assert all(k.startswith("unet.") and ".lora_" in k for k in read_weights(diffusers, "adapter")[0])

    # What the trained UNet computes, against the frozen base with each export merged at α = 1.
    from animatediff.base_model import load_base

    live = trainer.unet.unet.eval()
    x = torch.randn(2, 4, 8, 8)
    t = torch.tensor([10, 500])
    context = torch.randn(2, 77, live.config.cross_attention_dim)
    with torch.no_grad():
        expected = live(x, t, context).sample
        plain = load_base(base_folder).unet.eval()
        reference = plain(x, t, context).sample
        assert not torch.allclose(reference, expected, atol=1e-5)  # the adapter changed the model
        for exported in (official, diffusers):
            base = load_base(base_folder).unet.eval()
            merger = LoraMerger({"unet": base})
            merger.add("adapter", load_adapter_lora(exported), 1.0)
            torch.testing.assert_close(base(x, t, context).sample, expected, rtol=1e-4, atol=1e-5)
            merger.set_scale("adapter", 0.0)  # α = 0 gives back the base
            torch.testing.assert_close(base(x, t, context).sample, reference, rtol=0, atol=0)

    plain_frames = _generate(base_folder, _fresh(tmp_path), tmp_path / "a.npy")
    with_adapter = _generate(base_folder, _fresh(tmp_path), tmp_path / "b.npy", ["--adapter-lora", f"{official}:1.0"])
    assert np.abs(with_adapter - plain_frames).max() > 1e-4


def _fresh(tmp_path):
    from animatediff.formats.motion_module_files import save_motion_modules
    from tests.tiny import tiny_motion

    path = tmp_path / "v3.safetensors"
    if not path.is_file():
        save_motion_modules(tiny_motion("v3"), path)
    return path


def test_kill_and_resume_equals_an_uninterrupted_run(base_folder, tmp_path):
    sections = dict(checkpoint={"every": 2, "keep_last": 0, "resume_from": "latest"})
    sections["optim"] = {"max_steps": 4, "learning_rate": 1e-2, "caption_dropout": 0.5}
    whole = Trainer(adapter_config(base_folder, tmp_path / "whole", **sections))
    whole.train()
    killed = Trainer(adapter_config(base_folder, tmp_path / "split", **sections))
    killed.train(stop_after=3)
    resumed = Trainer(adapter_config(base_folder, tmp_path / "split", **sections))
    assert resumed.step == 2
    resumed.train()
    a, b = _unet_weights(whole), _unet_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_motion_stage_trains_over_base_plus_adapter(base_folder, tmp_path):
    adapter_run = Trainer(adapter_config(base_folder, tmp_path / "adapter"))
    exported = adapter_run.train()["checkpoint"] / ADAPTER_FILE
    adapted = adapter_run.unet.unet.eval()
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([100])
    context = torch.randn(1, 77, adapted.config.cross_attention_dim)
    with torch.no_grad():
        expected = adapted(x, t, context).sample

    motion_run = Trainer(train_config(base_folder, tmp_path / "motion", model={"adapter_lora": str(exported)}))
    assert motion_run.unet.motion_enabled
    base = motion_run.unet.unet
    assert not any(p.requires_grad for p in base.parameters())
    with torch.no_grad():  # the 2-D UNet alone: no frames folded, no motion module runs
        torch.testing.assert_close(base(x, t, context).sample, expected, rtol=1e-4, atol=1e-5)
    motion_run.train()


def test_bad_adapter_configs_are_one_line_errors(base_folder, tmp_path):
    with pytest.raises(InputError, match="lora.enabled and adapter.enabled: a run trains one of them"):
        adapter_config(base_folder, tmp_path, lora={"enabled": True}, model={"init_motion_module": "x"})
    with pytest.raises(InputError, match="unset model.adapter_lora"):
        adapter_config(base_folder, tmp_path, model={"adapter_lora": "a.safetensors"})
    with pytest.raises(InputError, match="adapter.rank must be at least 1"):
        adapter_config(base_folder, tmp_path, adapter={"rank": 0})
    with pytest.raises(InputError, match=r"adapter.rank 4096 is larger than the narrowest attention layer \(\d+"):
        Trainer(adapter_config(base_folder, tmp_path / "run", adapter={"rank": 4096}))


def test_a_motion_lora_wider_than_its_layers_is_one_line(base_folder, tmp_path):
    config = train_config(
        base_folder,
        tmp_path / "run",
        model={"init_motion_module": str(_fresh(tmp_path))},
        lora={"enabled": True, "rank": 4096},
    )
    with pytest.raises(
        InputError, match=r"lora.rank 4096 is larger than the motion module's narrowest attention \(\d+"
    ):
        Trainer(config)


def test_diffusers_layout_adapter_loads_into_diffusers_unet_as_trained(tmp_path):
    """The diffusers export, read by diffusers' own LoRA loader, computes what the trained adapter computes."""
    from animatediff.train.adapter import add_domain_adapter, save_domain_adapter
    from tests.tiny import tiny_unet

    trained = tiny_unet()
    add_domain_adapter(trained, rank=4, alpha=8)
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:  # as if trained: PEFT starts them at zero
                p.normal_(0, 0.1)
    trained.eval()
    save_domain_adapter(trained.state_dict(), 2.0, tmp_path)
    x, t, ctx = torch.randn(2, 4, 8, 8), torch.tensor([10, 700]), torch.randn(2, 77, 32)
    reference = tiny_unet().eval()
    state, _ = read_weights(tmp_path / DIFFUSERS_FOLDER / DIFFUSERS_LORA_FILE, "adapter")
    with torch.no_grad():
        expected = trained(x, t, ctx).sample
        without = reference(x, t, ctx).sample
        reference.load_lora_adapter(state, prefix="unet")
        got = reference(x, t, ctx).sample
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert (without - expected).abs().max() > 1e-3
