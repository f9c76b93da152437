"""SDXL motion modules in every form: the official beta layout, diffusers' SDXL MotionAdapter, HotShot-XL's layers.

Tiny modules keep SDXL's three UNet levels with small channels; the real SDXL shape is checked on the meta device
(names and shapes only) against diffusers' own MotionAdapter built from the hub's config.
"""

import json

import pytest
import torch
from diffusers import MotionAdapter
from safetensors.torch import load_file

from animatediff.cli import main
from animatediff.errors import InputError
from animatediff.formats.motion_module_files import (
    config_from_diffusers,
    load_motion_modules,
    motion_state_dict,
    official_to_diffusers,
)
from animatediff.formats.state_dicts import write_state_dict
from animatediff.models.motion_modules import MotionModules
from tests.tiny import tiny_motion

CHANNELS = (32, 64, 128)
"""SDXL's three levels, shrunk (8 heads and 32 norm groups, the defaults an official file cannot state, still fit)."""

HUB_SDXL_CONFIG = {
    "_class_name": "MotionAdapter",
    "_diffusers_version": "0.26.0.dev0",
    "block_out_channels": [320, 640, 1280],
    "motion_layers_per_block": 2,
    "motion_max_seq_length": 32,
    "motion_mid_block_layers_per_block": 1,
    "motion_norm_num_groups": 32,
    "motion_num_attention_heads": 8,
    "use_motion_mid_block": False,
}
"""config.json of guoyww/animatediff-motion-adapter-sdxl-beta (a duplicate of a-r-r-o-w's, commit f60dea3)."""
HUB_SDXL_WEIGHTS_BYTES = 948_604_184
"""Size of that repository's fp32 diffusion_pytorch_model.safetensors (tensors plus a JSON header)."""
MOTION_LORA_KEY = "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.processor.to_q_lora.down.weight"


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def sdxl_adapter(tmp_path, mid: bool = False) -> MotionAdapter:
    adapter = MotionAdapter(
        block_out_channels=CHANNELS,
        motion_layers_per_block=2,
        motion_num_attention_heads=2,
        motion_norm_num_groups=8,
        motion_max_seq_length=32,
        use_motion_mid_block=mid,
    )
    torch.manual_seed(4)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.2)
    adapter.save_pretrained(tmp_path / "adapter")
    return adapter.eval()


def hotshot_names(sd: dict) -> dict:
    """The official layout under HotShot-XL's names (hotshot_xl/models/temporal_layers.py, transformer_temporal.py)."""
    return {
        k.replace(".motion_modules.", ".temporal_attentions.")
        .replace(".temporal_transformer.", ".")
        .replace("pos_encoder.pe", "pos_encoder.positional_encoding"): v
        for k, v in sd.items()
    }


@pytest.mark.parametrize("version, mid, container", [("v3", False, "ckpt"), ("v2", True, "safetensors")])
def test_official_sdxl_file_loads_with_its_config_inferred(tmp_path, version, mid, container):
    mm = tiny_motion(version, channels=CHANNELS)
    sd = motion_state_dict(mm)
    # SDXL's layout: 2 modules in each of 3 down blocks, 3 in each of 3 up blocks, a mid-block one if the file has it.
    modules = {k.split(".temporal_transformer.")[0] for k in sd}
    expected = {f"down_blocks.{i}.motion_modules.{j}" for i in range(3) for j in range(2)}
    expected |= {f"up_blocks.{i}.motion_modules.{j}" for i in range(3) for j in range(3)}
    assert modules == expected | ({"mid_block.motion_modules.0"} if mid else set())
    if container == "ckpt":  # as released: pickled, wrapped, no config of ours
        torch.save({"state_dict": sd}, tmp_path / "mm_sdxl.ckpt")
        path = tmp_path / "mm_sdxl.ckpt"
    else:
        path = write_state_dict(tmp_path / "mm_sdxl.safetensors", sd)
    loaded = load_motion_modules(path)
    cfg = loaded.config
    assert (cfg.family, cfg.block_out_channels, cfg.layers_per_block) == ("sdxl", CHANNELS, 2)
    assert (cfg.use_mid_block, cfg.max_frames, cfg.version) == (mid, 32, version)
    assert_same_tensors(motion_state_dict(loaded), sd)


def test_diffusers_sdxl_adapter_loads_as_diffusers_built_it(tmp_path):
    adapter = sdxl_adapter(tmp_path)
    loaded = load_motion_modules(tmp_path / "adapter")
    cfg = loaded.config
    assert (cfg.family, cfg.block_out_channels, cfg.use_mid_block) == ("sdxl", CHANNELS, False)
    assert (cfg.num_attention_heads, cfg.norm_num_groups, cfg.max_frames) == (2, 8, 32)
    assert_same_tensors(official_to_diffusers(motion_state_dict(loaded)), adapter.state_dict())
    # Each module computes what diffusers' does: SDXL's modules normalize over the clip, as the official beta's.
    assert cfg.norm_over_frames
    torch.manual_seed(0)
    for name, ours in loaded.named_motion_modules():
        theirs = adapter.get_submodule(name)
        x = torch.randn(2 * 4, ours.temporal_transformer.proj_in.in_features, 3, 2)
        with torch.no_grad():
            torch.testing.assert_close(ours(x, num_frames=4), theirs(x, num_frames=4), rtol=1e-5, atol=1e-5)


def test_convert_official_to_diffusers_and_back_is_bit_exact(tmp_path):
    dtype = torch.float16  # kept through both conversions (fp32: the test below)
    sd = {k: v.to(dtype) for k, v in motion_state_dict(tiny_motion("v3", channels=CHANNELS)).items()}
    torch.save({"state_dict": sd}, tmp_path / "mm_sdxl_v10_beta.ckpt")
    assert main(["convert", str(tmp_path / "mm_sdxl_v10_beta.ckpt"), str(tmp_path / "folder")]) == 0
    assert main(["convert", str(tmp_path / "folder"), str(tmp_path / "back.safetensors")]) == 0
    assert_same_tensors(load_file(tmp_path / "back.safetensors"), sd)
    config = json.loads((tmp_path / "folder" / "config.json").read_text())
    assert config["block_out_channels"] == list(CHANNELS) and config["use_motion_mid_block"] is False
    assert config["motion_max_seq_length"] == 32
    adapter = MotionAdapter.from_pretrained(tmp_path / "folder", torch_dtype=dtype)  # diffusers reads the folder
    assert_same_tensors(adapter.state_dict(), official_to_diffusers(sd))


def test_convert_diffusers_to_official_and_back_is_bit_exact(tmp_path):
    sdxl_adapter(tmp_path)
    assert main(["convert", str(tmp_path / "adapter"), str(tmp_path / "mm.safetensors")]) == 0
    assert main(["convert", str(tmp_path / "mm.safetensors"), str(tmp_path / "again")]) == 0
    weights = "diffusion_pytorch_model.safetensors"
    assert_same_tensors(load_file(tmp_path / "again" / weights), load_file(tmp_path / "adapter" / weights))
    first, second = (json.loads((tmp_path / d / "config.json").read_text()) for d in ("adapter", "again"))
    shape_keys = set(HUB_SDXL_CONFIG) - {"_class_name", "_diffusers_version"}
    assert {k: second[k] for k in shape_keys} == {k: first[k] for k in shape_keys}


def test_the_real_sdxl_beta_shape_matches_diffusers_and_the_hub_file():
    cfg = config_from_diffusers(HUB_SDXL_CONFIG)
    assert (cfg.family, cfg.block_out_channels, cfg.layers_per_block) == ("sdxl", (320, 640, 1280), 2)
    assert (cfg.use_mid_block, cfg.max_frames, cfg.num_attention_heads, cfg.version) == (False, 32, 8, "v3")
    sd15 = dict(HUB_SDXL_CONFIG, block_out_channels=[320, 640, 1280, 1280], use_motion_mid_block=True)
    assert config_from_diffusers(sd15).family == "sd1"
    kwargs = {k: v for k, v in HUB_SDXL_CONFIG.items() if not k.startswith("_")}
    with torch.device("meta"):  # names and shapes only: nothing is allocated
        adapter = MotionAdapter(**kwargs)
        ours = MotionModules(cfg)
    theirs = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in official_to_diffusers(motion_state_dict(ours)).items()} == theirs
    values = sum(v.numel() for v in adapter.state_dict().values())
    assert 0 < HUB_SDXL_WEIGHTS_BYTES - 4 * values < 100_000  # the hub file holds exactly these, plus its header


@pytest.mark.parametrize("whole_unet", [False, True])
def test_hotshot_xl_temporal_layers_load_as_a_v1_style_sdxl_module(tmp_path, whole_unet):
    mm = tiny_motion("v1", channels=CHANNELS)  # HotShot-XL: a sinusoid of 24 frames, whole-clip ResNet norms
    sd = motion_state_dict(mm)
    hotshot = hotshot_names(sd)
    assert "down_blocks.0.temporal_attentions.0.transformer_blocks.0.attention_blocks.0.to_q.weight" in hotshot
    if whole_unet:  # hotshotco/Hotshot-XL's unet/ weights: the SDXL UNet's own beside the temporal layers
        hotshot |= {
            "conv_in.weight": torch.zeros(32, 4, 3, 3),
            "down_blocks.1.attentions.0.proj_in.weight": torch.zeros(1),
        }
    write_state_dict(tmp_path / "hsxl_temporal_layers.safetensors", hotshot)
    loaded = load_motion_modules(tmp_path / "hsxl_temporal_layers.safetensors")
    cfg = loaded.config
    assert (cfg.family, cfg.use_mid_block, cfg.max_frames, cfg.version) == ("sdxl", False, 24, "v1")
    assert_same_tensors(motion_state_dict(loaded), sd)
    if not whole_unet:
        assert main(["convert", str(tmp_path / "hsxl_temporal_layers.safetensors"), str(tmp_path / "mm.ckpt")]) == 0
        assert_same_tensors(load_motion_modules(tmp_path / "mm.ckpt").state_dict(), loaded.state_dict())


@pytest.mark.parametrize(
    "tensors, message",
    [
        ({"foo.weight": torch.zeros(2)}, r"1 tensors like \['foo.weight'\]; expected official keys"),
        ({MOTION_LORA_KEY: torch.ones(1)}, "looks like a LoRA"),
        ({"model.diffusion_model.input_blocks.0.0.weight": torch.ones(1)}, "looks like a Stable Diffusion checkpoint"),
        ({"conv_in.weight": torch.ones(1), "down_blocks.0.resnets.0.conv1.weight": torch.ones(1)}, "UNet without"),
        ({}, "holds no tensors"),
    ],
)
def test_a_file_in_no_layout_says_what_it_holds_in_one_line(tmp_path, capsys, tensors, message):
    path = write_state_dict(tmp_path / "odd.ckpt", tensors)
    with pytest.raises(InputError, match=message) as err:
        load_motion_modules(path)
    assert str(err.value).startswith(f"{path} ") and "\n" not in str(err.value)
    assert main(["convert", str(path), str(tmp_path / "out")]) == 2
    assert "Traceback" not in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_folder_of_another_diffusers_class_is_named(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    write_state_dict(tmp_path / "unet" / "diffusion_pytorch_model.safetensors", {"conv_in.weight": torch.ones(1)})
    with pytest.raises(
        InputError, match="holds a UNet2DConditionModel \\(config.json\\), not a diffusers MotionAdapter"
    ):
        load_motion_modules(tmp_path / "unet")
