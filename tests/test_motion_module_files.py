import json

import pytest
import torch
from diffusers import MotionAdapter

from animatediff.formats.motion_module_files import (
    detect_version,
    diffusers_to_official,
    load_motion_modules,
    motion_state_dict,
    official_to_diffusers,
    save_motion_modules,
)
from animatediff.formats.state_dicts import write_state_dict
from animatediff.models import inflate_unet
from animatediff.pipeline import AnimationPipeline
from tests.tiny import tiny_motion, tiny_unet


def assert_same_weights(a, b):
    sa, sb = motion_state_dict(a), motion_state_dict(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_official_file_round_trip_and_version_detection(tmp_path, version):
    mm = tiny_motion(version)
    sd = motion_state_dict(mm)
    assert detect_version(sd) == version
    # A file as released: pickled, wrapped, DDP prefixes, a stray config entry, no config of ours.
    raw = {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "animatediff_config": {"foo": 1}}
    torch.save(raw, tmp_path / "mm.ckpt")
    loaded = load_motion_modules(tmp_path / "mm.ckpt")
    assert loaded.config.version == version
    assert loaded.config.max_frames == (24 if version == "v1" else 32)
    assert_same_weights(mm, loaded)


def test_official_diffusers_official_round_trip_is_exact(tmp_path):
    mm = tiny_motion("v2")
    save_motion_modules(mm, tmp_path / "a.safetensors")
    save_motion_modules(load_motion_modules(tmp_path / "a.safetensors"), tmp_path / "folder", layout="diffusers")
    adapter = MotionAdapter.from_pretrained(tmp_path / "folder")  # diffusers reads our folder
    assert adapter.config.use_motion_mid_block
    save_motion_modules(load_motion_modules(tmp_path / "folder"), tmp_path / "b.safetensors")
    assert_same_weights(mm, load_motion_modules(tmp_path / "b.safetensors"))
    sd = motion_state_dict(mm)
    assert diffusers_to_official(official_to_diffusers(sd)).keys() == sd.keys()


def test_ckpt_and_safetensors_give_identical_frames(tmp_path, base_folder):
    mm = tiny_motion("v3")
    sd = motion_state_dict(mm)
    torch.save(sd, tmp_path / "mm.ckpt")
    write_state_dict(tmp_path / "mm.safetensors", sd)
    videos = []
    for name in ("mm.ckpt", "mm.safetensors"):
        pipe = AnimationPipeline.from_pretrained(base_folder, tmp_path / name)
        videos.append(pipe("a dog", num_frames=4, num_inference_steps=2, seed=3, progress=False))
    assert (videos[0] == videos[1]).all()


def test_strict_loading_names_the_bad_key(tmp_path):
    sd = motion_state_dict(tiny_motion("v3"))
    sd["down_blocks.0.motion_modules.0.temporal_transformer.extra.weight"] = torch.zeros(1)
    write_state_dict(tmp_path / "extra.safetensors", sd)
    with pytest.raises(ValueError, match="unexpected.*extra.weight"):
        load_motion_modules(tmp_path / "extra.safetensors")
    sd = motion_state_dict(tiny_motion("v3"))
    del sd["up_blocks.1.motion_modules.2.temporal_transformer.proj_in.bias"]
    write_state_dict(tmp_path / "missing.safetensors", sd)
    with pytest.raises(ValueError, match="missing.*up_blocks.1.motion_modules.2.temporal_transformer.proj_in.bias"):
        load_motion_modules(tmp_path / "missing.safetensors")


def test_bad_files_have_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_motion_modules(tmp_path / "nope.ckpt")
    torch.save(motion_state_dict(tiny_motion()), tmp_path / "pickle.safetensors")
    with pytest.raises(ValueError, match="torch pickle"):
        load_motion_modules(tmp_path / "pickle.safetensors")
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileNotFoundError, match="MotionAdapter folder"):
        load_motion_modules(tmp_path / "folder")


def test_sdxl_shaped_module_on_sd15_unet_is_refused():
    wide = tiny_motion("v3", channels=(32, 64, 64))
    with pytest.raises(ValueError, match=r"built for UNet channels \(32, 64, 64\).*has \(32, 64\)"):
        inflate_unet(tiny_unet(), wide)


def test_trained_position_encoding_is_kept(tmp_path):
    mm = tiny_motion("v3")
    sd = motion_state_dict(mm)
    key = next(k for k in sd if k.endswith("pos_encoder.pe"))
    sd[key] = torch.randn_like(sd[key])
    write_state_dict(tmp_path / "pe.safetensors", sd, {"animatediff_config": json.dumps(mm.config.to_dict())})
    loaded = load_motion_modules(tmp_path / "pe.safetensors")
    assert torch.equal(dict(loaded.named_buffers())[key], sd[key])


@pytest.mark.parametrize("layout", ["official", "diffusers"])
def test_weights_that_are_not_finite_are_refused_with_their_count(tmp_path, layout):
    mm = tiny_motion("v3")
    sd = motion_state_dict(mm)
    key = next(k for k in sd if k.endswith("to_q.weight"))
    sd[key] = sd[key].clone()
    sd[key].view(-1)[:4] = float("nan")
    sd[key].view(-1)[4] = float("inf")
    total = sum(v.numel() for v in sd.values())
    if layout == "official":
        path = write_state_dict(tmp_path / "diverged.safetensors", sd)
        weights = path
    else:
        path = save_motion_modules(mm, tmp_path / "folder", layout="diffusers")
        weights = path / "diffusion_pytorch_model.safetensors"
        write_state_dict(weights, official_to_diffusers(sd))
        total = sum(v.numel() for v in diffusers_to_official(official_to_diffusers(sd)).values())
    with pytest.raises(ValueError, match=rf"^{weights}: 5 of {total} motion-module weight values are not finite"):
        load_motion_modules(path)


def test_convert_keeps_half_precision_and_writes_a_folder_whole(tmp_path):
    from safetensors.torch import load_file

    from animatediff.formats import convert_motion_module

    half = {k: v.half() for k, v in motion_state_dict(tiny_motion("v2")).items()}
    write_state_dict(tmp_path / "half.ckpt", half)
    convert_motion_module(tmp_path / "half.ckpt", tmp_path / "adapter")
    weights = load_file(tmp_path / "adapter" / "diffusion_pytorch_model.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.float16}
    # An earlier export is replaced whole; a folder holding anything else is left alone.
    (tmp_path / "adapter" / "diffusion_pytorch_model.bin").write_bytes(b"stale")
    convert_motion_module(tmp_path / "half.ckpt", tmp_path / "adapter", torch.float32)
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    (tmp_path / "adapter" / "README.md").write_text("mine")
    with pytest.raises(ValueError, match="holding other files"):
        convert_motion_module(tmp_path / "half.ckpt", tmp_path / "adapter")
    assert (tmp_path / "adapter" / "README.md").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "half.ckpt"]  # no temporaries left
