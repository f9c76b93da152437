"""SparseCtrl files (official ↔ diffusers), the encoder against diffusers' SparseControlNetModel, keyframes under
context windows, the command line, and bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from diffusers import SparseControlNetModel
from PIL import Image
from safetensors.torch import save_file

from animatediff.cli import main
from animatediff.errors import InputError
from animatediff.formats.motion_module_files import save_motion_modules
from animatediff.formats.sparse_ctrl import (
    convert_sparse_ctrl,
    load_sparse_ctrl,
    model_state_dict,
    official_to_diffusers_sd,
    save_sparse_ctrl,
)
from animatediff.pipeline.sparse_ctrl import SparseCtrl, SparseCtrlCondition, sparse_ctrl_conditions
from tests.sparse_ctrl_helpers import diffusers_sparse_ctrl, tiny_sparse_ctrl
from tests.tiny import tiny_motion, tiny_unet

pytestmark = pytest.mark.usefixtures("one_thread")


def inputs(kind: str, frames: int = 5):
    torch.manual_seed(1)
    size, channels = (8, 4) if kind == "rgb" else (16, 3)
    condition = torch.zeros(2, channels, frames, size, size)
    mask = torch.zeros(2, 1, frames, size, size)
    condition[:, :, 0], mask[:, :, 0] = torch.randn(2, channels, size, size), 1
    return torch.randn(2, 4, frames, 8, 8), torch.randn(2, 7, 32), condition, mask


@pytest.mark.parametrize("kind", ["rgb", "scribble"])
def test_the_encoder_matches_diffusers_sparse_control_net_model(kind):
    ours = tiny_sparse_ctrl(tiny_unet(), kind)
    reference = diffusers_sparse_ctrl(ours)
    x, text, condition, mask = inputs(kind)
    with torch.no_grad():
        down, mid = ours(x, torch.tensor(500), text, condition, mask, 0.8)
        ref_down, ref_mid = reference(x, torch.tensor(500), text.repeat_interleave(5, 0), condition,
                                      conditioning_mask=mask, conditioning_scale=0.8, return_dict=False)  # fmt: skip
    assert len(down) == len(ref_down)
    for a, b in zip([*down, mid], [*ref_down, ref_mid]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert mid.abs().mean() > 0.1


@pytest.mark.parametrize("kind", ["rgb", "scribble"])
def test_official_and_diffusers_layouts_round_trip_exactly(kind, tmp_path):
    unet = tiny_unet()
    ours = tiny_sparse_ctrl(unet, kind)
    weights = model_state_dict(ours)
    official = save_sparse_ctrl(ours, tmp_path / "sparsectrl.safetensors")
    folder = convert_sparse_ctrl(official, tmp_path / "diffusers")
    back = convert_sparse_ctrl(folder, tmp_path / "back.safetensors")
    for path in (official, folder, back):
        loaded = model_state_dict(load_sparse_ctrl(path, unet.config))
        assert loaded.keys() == weights.keys()
        assert all(torch.equal(loaded[k], weights[k]) for k in weights), path
    # diffusers reads the folder written here, weight for weight.
    reference = SparseControlNetModel.from_pretrained(folder)
    expected = official_to_diffusers_sd(weights)
    assert all(torch.equal(v, expected[k]) for k, v in reference.state_dict().items())


def test_a_released_style_file_loads_without_a_config(tmp_path):
    """As released: official names, no config, under a 'controlnet' entry of a torch pickle; and a diffusers folder
    written by diffusers itself."""
    unet = tiny_unet()
    ours = tiny_sparse_ctrl(unet, "rgb")
    weights = model_state_dict(ours)
    torch.save({"controlnet": weights}, tmp_path / "v3_sd15_sparsectrl_rgb.ckpt")
    diffusers_sparse_ctrl(ours, per_frame_norm=False).save_pretrained(tmp_path / "from-diffusers")
    x, text, condition, mask = inputs("rgb")
    with torch.no_grad():
        expected = ours(x, 500, text, condition, mask)[1]
        for path in (tmp_path / "v3_sd15_sparsectrl_rgb.ckpt", tmp_path / "from-diffusers"):
            loaded = load_sparse_ctrl(path, unet.config)
            assert loaded.sparse_config.takes_latents and loaded.sparse_config.conditioning_channels == 4
            torch.testing.assert_close(loaded(x, 500, text, condition, mask)[1], expected, rtol=1e-5, atol=2e-5)


def test_files_for_another_base_or_broken_are_refused(tmp_path):
    ours = tiny_sparse_ctrl(tiny_unet(), "rgb")
    path = save_sparse_ctrl(ours, tmp_path / "s.safetensors")
    sd2 = dict(tiny_unet().config) | {"cross_attention_dim": 1024}
    with pytest.raises(InputError, match=r"cross-attention dimension 32 .*but the base UNet has 1024 \(SD2.x\)"):
        load_sparse_ctrl(path, sd2)
    wider = dict(tiny_unet(channels=(64, 64)).config)
    with pytest.raises(InputError, match="block channels"):
        load_sparse_ctrl(path, wider)
    weights = model_state_dict(ours)
    weights["conv_in.weight"] = torch.full_like(weights["conv_in.weight"], float("nan"))
    save_file(weights, tmp_path / "nan.safetensors")
    with pytest.raises(InputError, match="not finite"):
        load_sparse_ctrl(tmp_path / "nan.safetensors")
    save_file({"conv_in.weight": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(InputError, match="not a SparseCtrl file"):
        load_sparse_ctrl(tmp_path / "other.safetensors")


class Recording(torch.nn.Module):
    """Wraps an encoder, keeping the masks it is called with."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.masks = model, []

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def forward(self, x, t, text, condition, mask, **kwargs):
        self.masks.append(mask[0, 0, :, 0, 0].tolist())
        return self.inner(x, t, text, condition, mask, **kwargs)


def test_each_context_window_gets_the_keyframes_it_holds(make_pipeline):
    pipe = make_pipeline("v3")
    model = tiny_sparse_ctrl(pipe.unet.unet, "scribble")
    image = torch.rand(3, 16, 16)
    bound = sparse_ctrl_conditions([SparseCtrl(model, {1: image, 9: image})], pipe, torch.tensor([900, 500]), 12, 16,
                                   16, guided=False)[0]  # fmt: skip
    recording = Recording(model)
    bound.model = recording
    x, text = torch.randn(1, 4, 6, 8, 8), torch.randn(1, 7, 32)
    for frames in ([0, 1, 2, 3, 4, 5], [4, 5, 6, 7, 8, 9], [6, 7, 8, 10, 11, 0]):
        bound.unet_kwargs(x, torch.tensor(900), text, torch.tensor(frames))
    assert recording.masks == [[0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]]
    # Its start and end pick the steps it acts in, as a ControlNet's.
    late = SparseCtrlCondition(SparseCtrl(model, {0: image}, start=0.5), bound.condition, bound.mask,
                               torch.tensor([900, 500]), False)  # fmt: skip
    assert late.unet_kwargs(x, torch.tensor(900), text, torch.arange(6)) == {}
    assert late.unet_kwargs(x, torch.tensor(500), text, torch.arange(6))


def test_windows_with_a_keyframe_run_end_to_end_and_differ_from_none(make_pipeline):
    pipe = make_pipeline("v3")
    control = SparseCtrl(tiny_sparse_ctrl(pipe.unet.unet, "rgb"), {0: torch.rand(3, 16, 16)})
    args = dict(num_frames=10, height=16, width=16, num_inference_steps=2, seed=3, progress=False, context_length=6,
                context_overlap=2)  # fmt: skip
    with_keyframe = pipe("a circle", **args, sparse_ctrls=[control])
    assert np.abs(with_keyframe - pipe("a circle", **args)).mean() > 1e-3


def test_bad_keyframes_are_refused(make_pipeline, caplog):
    pipe = make_pipeline("v3")
    model = tiny_sparse_ctrl(pipe.unet.unet, "scribble")
    args = dict(num_frames=4, height=16, width=16, num_inference_steps=1, progress=False)
    with pytest.raises(InputError, match="keyframe 4 is outside the clip of 4 frames"):
        pipe("x", **args, sparse_ctrls=[SparseCtrl(model, {4: torch.rand(3, 16, 16)})])
    with pytest.raises(InputError, match="keyframe images of 8×8 for an output of 16×16"):
        pipe("x", **args, sparse_ctrls=[SparseCtrl(model, {0: torch.rand(3, 8, 8)})])
    with pytest.raises(InputError, match="needs keyframes"):
        SparseCtrl(model, {})
    with pytest.raises(InputError, match="must be an animatediff SparseControlNet"):
        SparseCtrl(torch.nn.Linear(1, 1), {0: torch.rand(3, 16, 16)})
    colour = torch.zeros(3, 16, 16)
    colour[0] = 1.0  # pure red: a picture, not a scribble
    with caplog.at_level(logging.WARNING):
        pipe("x", **args, sparse_ctrls=[SparseCtrl(model, {0: colour})])
    assert "a keyframe is a colour picture, but this SparseCtrl takes scribbles" in caplog.text


@pytest.fixture
def files(base_folder, tmp_path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(base_folder / "unet")
    sparse = save_sparse_ctrl(tiny_sparse_ctrl(unet, "rgb"), tmp_path / "sparsectrl.safetensors")
    motion = save_motion_modules(tiny_motion("v3"), tmp_path / "motion.safetensors")
    Image.fromarray(np.full((20, 24, 3), 200, np.uint8)).save(tmp_path / "first.png")
    return sparse, motion, tmp_path / "first.png"


def test_cli_image_to_video(base_folder, files, tmp_path, capsys):
    sparse, motion, first = files
    out = tmp_path / "out.gif"
    args = ["generate", "--prompt", "a square", "--base", str(base_folder), "--motion-module", str(motion)]
    args += ["--frames", "4", "--width", "16", "--height", "16", "--steps", "2", "--output", str(out)]
    assert main([*args, "--sparsectrl", f"{sparse}:0.9", "--keyframe", f"0:{first}", f"--keyframe=-1:{first}"]) == 0
    assert out.is_file()
    assert "note: keyframe 0 is 24×20; scaled to cover 16×16" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--keyframe", "0:first.png"], "--keyframe without --sparsectrl"),
        (["--sparsectrl", "S"], "--sparsectrl without --keyframe"),
        (["--sparsectrl", "S", "--keyframe", "4:first.png"], "frame 4 is outside the clip of 4 frames"),
        (["--sparsectrl", "S", "--keyframe", "first.png"], "expected INDEX:IMAGE"),
        (["--sparsectrl", "S", "--keyframe", "0:missing.png"], "keyframe image not found: missing.png"),
        (["--sparsectrl", "S", "--keyframe", "0:first.png", "--sparsectrl-end", "2"], "need 0 ≤ start < end ≤ 1"),
    ],
)
def test_cli_bad_input_is_one_line_before_loading(base_folder, files, tmp_path, capsys, monkeypatch, extra, message):
    sparse, motion, first = files
    monkeypatch.chdir(tmp_path)
    extra = [str(sparse) if e == "S" else e for e in extra]
    args = ["generate", "--prompt", "x", "--base", str(base_folder), "--motion-module", str(motion), "--frames", "4"]
    assert main([*args, *extra, "--output", str(tmp_path / "o.gif")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o.gif").exists()


def test_cli_convert_takes_sparse_ctrl_files(files, tmp_path):
    sparse, _, _ = files
    assert main(["convert", str(sparse), str(tmp_path / "folder")]) == 0
    assert (tmp_path / "folder" / "config.json").is_file()
    assert main(["convert", str(tmp_path / "folder"), str(tmp_path / "again.safetensors"), "--dtype", "fp16"]) == 0
    again = load_sparse_ctrl(tmp_path / "again.safetensors")
    assert again.dtype == torch.float16


LATENT_CONDITION = """controlnet_additional_kwargs:
  set_noisy_sample_input_to_zero:     true
  use_simplified_condition_embedding: true
  conditioning_channels:              4

  use_motion_module:         true
  motion_module_resolutions: [1,2,4,8]
  motion_module_mid_block:   false
  motion_module_type:        "Vanilla"

  motion_module_kwargs:
    num_attention_heads:                8
    num_transformer_block:              1
    attention_block_types:              [ "Temporal_Self" ]
    temporal_position_encoding:         true
    temporal_position_encoding_max_len: 32
    temporal_attention_dim_div:         1
"""

OFFICIAL_I2V = """# 1-animation
- dreambooth_path:   ""
  inference_config: "configs/inference/inference-v3.yaml"
  motion_module:    "models/Motion_Module/v3_sd15_mm.ckpt"

  controlnet_config: "configs/inference/sparsectrl/latent_condition.yaml"
  controlnet_path:   "models/SparseCtrl/v3_sd15_sparsectrl_rgb.ckpt"

  H: 16
  W: 16
  L: 4
  seed: [123]
  steps: 2
  guidance_scale: 8.5

  controlnet_image_indexs: [0]
  controlnet_images:
    - "__assets__/demos/image/painting.png"

  prompt:
    - an oil painting of a sailboat in the ocean wave
  n_prompt:
    - "worst quality, low quality, letterboxed"

# 2-interpolation
- dreambooth_path:   ""
  inference_config: "configs/inference/inference-v3.yaml"
  motion_module:    "models/Motion_Module/v3_sd15_mm.ckpt"

  controlnet_config: "configs/inference/sparsectrl/latent_condition.yaml"
  controlnet_path:   "models/SparseCtrl/v3_sd15_sparsectrl_rgb.ckpt"

  H: 16
  W: 16
  L: 4
  seed: [123]
  steps: 2
  guidance_scale: 8.5

  controlnet_image_indexs: [0,-1]
  controlnet_images:
    - "__assets__/demos/image/interpolation_1.png"
    - "__assets__/demos/image/interpolation_2.png"

  prompt:
    - "aerial view, beautiful forest, autumn, 4k, high quality"
  n_prompt:
    - "worst quality, low quality, letterboxed"
"""


def test_an_official_sparse_ctrl_config_runs_from_the_repo_root(base_folder, tmp_path, monkeypatch):
    """The official file layout and keys: an official-layout .ckpt with no config, its inference YAML, keyframe
    images at 0 and -1; each entry's frames differ from the same entry without SparseCtrl."""
    import yaml
    from diffusers import UNet2DConditionModel

    from animatediff.model_cache import ModelCache
    from animatediff.prompt_config import run_prompt_config

    monkeypatch.chdir(tmp_path)
    for folder in ("configs/prompts/3_sparsectrl", "configs/inference/sparsectrl", "models/Motion_Module",
                   "models/SparseCtrl", "__assets__/demos/image"):  # fmt: skip
        (tmp_path / folder).mkdir(parents=True)
    unet = UNet2DConditionModel.from_pretrained(base_folder / "unet")
    torch.save(model_state_dict(tiny_sparse_ctrl(unet, "rgb")), "models/SparseCtrl/v3_sd15_sparsectrl_rgb.ckpt")
    save_motion_modules(tiny_motion("v3"), "models/Motion_Module/v3_sd15_mm.ckpt")
    (tmp_path / "configs/inference/sparsectrl/latent_condition.yaml").write_text(LATENT_CONDITION)
    for i, name in enumerate(("painting", "interpolation_1", "interpolation_2")):
        Image.fromarray(np.full((24, 36, 3), 60 * i + 40, np.uint8)).save(f"__assets__/demos/image/{name}.png")
    config = tmp_path / "configs/prompts/3_sparsectrl/3_1_sparsectrl_i2v.yaml"
    config.write_text(OFFICIAL_I2V)
    out = run_prompt_config(config, base_folder, "samples", ModelCache(), progress=False)
    names = sorted(p.name for p in (out / "sample").iterdir())
    assert names == ["0-an-oil-painting-of-a-sailboat-in-the-ocean-wave.gif",
                     "1-aerial-view,-beautiful-forest,-autumn,-4k,-high-quality.gif"]  # fmt: skip
    plain = yaml.safe_load(OFFICIAL_I2V)
    for entry in plain:
        for key in [k for k in entry if k.startswith("controlnet_")]:
            del entry[key]
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(plain))
    without = run_prompt_config(tmp_path / "plain.yaml", base_folder, "samples", ModelCache(), progress=False)
    for name in names:
        a = np.asarray(Image.open(out / "sample" / name).convert("RGB"), np.float32)
        b = np.asarray(Image.open(without / "sample" / name).convert("RGB"), np.float32)
        assert np.abs(a - b).mean() > 0.5, name


def test_official_sparse_ctrl_keys_that_do_not_fit_fail_before_loading(base_folder, tmp_path):
    from animatediff.prompt_config import run_prompt_config

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "s.ckpt").write_bytes(b"")  # never read: the index fails first
    save_motion_modules(tiny_motion("v3"), tmp_path / "mm.safetensors")
    entry = {"motion_module": "mm.safetensors", "prompt": ["x"], "L": 4, "controlnet_path": "s.ckpt",
             "controlnet_images": ["a.png"], "controlnet_image_indexs": [4]}  # fmt: skip
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump([entry]))
    with pytest.raises(InputError, match="controlnet_image_indexs 4 is outside the clip of 4 frames"):
        run_prompt_config(tmp_path / "c.yaml", base_folder, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_keyframe_alone_animates_a_picture_with_the_embedded_encoder(tmp_path, capsys):
    """The embedded world ships an RGB SparseCtrl encoder: --keyframe without --sparsectrl uses it, offline; the
    first frame comes out nearer the picture than without it."""
    from animatediff.io.video_input import read_video_input
    from animatediff.world.render import render_image
    from animatediff.world.scenes import SceneSpec

    picture = render_image(SceneSpec("square", "yellow", "gray", motion="right", amount=0.3, x=0.3), 32).frames[0]
    Image.fromarray(picture).save(tmp_path / "square.png")
    args = ["generate", "--prompt", "a yellow square moving right on a gray background", "--frames", "8", "--steps",
            "8", "--seed", "1", "--quiet"]  # fmt: skip
    assert main([*args, "--keyframe", f"0:{tmp_path / 'square.png'}", "--output", str(tmp_path / "i2v.npy")]) == 0
    assert main([*args, "--output", str(tmp_path / "t2v.npy")]) == 0
    target = picture.astype(np.float32) / 255
    errors = [float(np.mean((np.load(tmp_path / name)[0] - target) ** 2)) for name in ("i2v.npy", "t2v.npy")]
    print(f"first-frame MSE with the keyframe {errors[0]:.4f}, without {errors[1]:.4f}")
    assert errors[0] < 0.7 * errors[1], errors
    assert read_video_input(tmp_path / "i2v.npy", 8).shape == (8, 32, 32, 3)
