"""Loading ControlNets: diffusers folders, and single files in the original layout read through diffusers' own
converter with a config derived from the base's UNet, offline; other model families refused in one line."""

import pickle

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from animatediff.errors import InputError, InputNotFound
from animatediff.formats.controlnet import load_controlnet
from tests.controlnet_helpers import ldm_controlnet_state_dict, tiny_controlnet
from tests.tiny import tiny_unet

STAGES = (4, 8, 8, 16)  # four hint-encoder stages, as every released SD1.5 ControlNet has (16, 32, 96, 256)


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.fixture(scope="module")
def controlnet(unet):
    """Every weight random (not only the zero convolutions), so that a misplaced one shows."""
    model = tiny_controlnet(unet, stages=STAGES)
    torch.manual_seed(21)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


def assert_same_weights(loaded, original):
    a, b = loaded.state_dict(), original.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert tuple(loaded.config.conditioning_embedding_out_channels) == STAGES
    assert not any(p.is_meta for p in loaded.parameters())


@pytest.mark.parametrize("name", ["control_v11p_sd15_tiny.pth", "control_v11p_sd15_tiny.safetensors"])
def test_single_file_in_the_original_layout_loads_back_exactly(tmp_path, unet, controlnet, name):
    sd = ldm_controlnet_state_dict(controlnet)
    assert "control_model.input_hint_block.14.weight" in sd and "control_model.zero_convs.0.0.weight" in sd
    path = tmp_path / name
    torch.save(sd, path) if path.suffix == ".pth" else save_file(sd, path)
    loaded = load_controlnet(path, unet)
    assert_same_weights(loaded, controlnet)
    sample, cond = torch.randn(2, 4, 8, 8), torch.rand(2, 3, 64, 64)
    text = torch.randn(2, 77, 32)
    down, mid = loaded(sample, 10, text, cond, return_dict=False)
    expected_down, expected_mid = controlnet(sample, 10, text, cond, return_dict=False)
    assert torch.equal(mid, expected_mid) and all(torch.equal(a, b) for a, b in zip(down, expected_down))


def test_other_single_file_variants(tmp_path, unet, controlnet):
    bare = ldm_controlnet_state_dict(controlnet, prefix="")  # as some re-saved files come, without the prefix
    torch.save(bare, tmp_path / "bare.pth")
    assert_same_weights(load_controlnet(tmp_path / "bare.pth", unet), controlnet)
    # A v1.0-style file: the whole SD model beside `control_model.*`, wrapped in a "state_dict", in half precision.
    full = {
        "state_dict": {"model.diffusion_model.conv_in.weight": torch.zeros(1), **ldm_controlnet_state_dict(controlnet)}
    }
    torch.save(full, tmp_path / "control_sd15_tiny.pth")
    half = load_controlnet(tmp_path / "control_sd15_tiny.pth", unet, torch.float16)
    assert half.dtype == torch.float16
    assert torch.equal(half.conv_in.weight, controlnet.conv_in.weight.half())
    # diffusers names in one file, and in a folder with one weights file and no config.
    save_file({k: v.contiguous() for k, v in controlnet.state_dict().items()}, tmp_path / "diffusers.safetensors")
    assert_same_weights(load_controlnet(tmp_path / "diffusers.safetensors", unet), controlnet)
    folder = tmp_path / "one_file"
    folder.mkdir()
    torch.save(bare, folder / "model.pth")
    assert_same_weights(load_controlnet(folder, unet), controlnet)


def test_diffusers_folder_loads(tmp_path, unet, controlnet):
    controlnet.save_pretrained(tmp_path / "controlnet")
    assert_same_weights(load_controlnet(tmp_path / "controlnet", unet), controlnet)


@pytest.mark.parametrize(("dim", "family"), [(1024, "SD2.x"), (2048, "SDXL")])
def test_a_controlnet_of_another_family_is_one_input_error(tmp_path, unet, dim, family):
    other = UNet2DConditionModel.from_config({**unet.config, "cross_attention_dim": dim})
    sd = ldm_controlnet_state_dict(tiny_controlnet(other, stages=STAGES))
    torch.save(sd, tmp_path / "other.pth")
    message = rf"cross-attention dimension {dim} \({family}\), but the base UNet has 32"
    with pytest.raises(InputError, match=message) as err:
        load_controlnet(tmp_path / "other.pth", unet)
    assert "\n" not in str(err.value)
    tiny_controlnet(other, stages=STAGES).save_pretrained(tmp_path / "folder")
    with pytest.raises(InputError, match=message):
        load_controlnet(tmp_path / "folder", unet)


def test_files_that_are_no_controlnet(tmp_path, unet, controlnet):
    with pytest.raises(InputNotFound, match="ControlNet not found"):
        load_controlnet(tmp_path / "missing.pth", unet)
    save_file({"down_blocks.0.lora_down.weight": torch.zeros(2, 2)}, tmp_path / "lora.safetensors")
    with pytest.raises(InputError, match="is not a ControlNet"):
        load_controlnet(tmp_path / "lora.safetensors", unet)
    sd = ldm_controlnet_state_dict(controlnet)
    del sd["control_model.zero_convs.1.0.weight"]
    torch.save(sd, tmp_path / "incomplete.pth")
    with pytest.raises(InputError, match="1 missing"):
        load_controlnet(tmp_path / "incomplete.pth", unet)


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_pickled_code_is_not_run(tmp_path, unet, capsys):
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"control_model.conv": Payload()}, f, protocol=2)
    with pytest.raises(InputError, match="not a readable torch checkpoint"):
        load_controlnet(tmp_path / "evil.pth", unet)
    assert "this ran" not in capsys.readouterr().out
