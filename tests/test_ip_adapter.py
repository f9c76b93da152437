"""IP-Adapter: the frames diffusers' AnimateDiffPipeline draws with `ip_adapter_image` after `load_ip_adapter` (the
same weights, tiny and random), the UNet left exactly as it was, context windows and FreeNoise, and one-line errors
before denoising."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import IPAdapterPlusImageProjection
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from animatediff.errors import InputError, InputNotFound
from animatediff.formats.ip_adapter import read_ip_adapter
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline import animation as animation_module
from animatediff.pipeline import ip_call as ip_module
from animatediff.pipeline.free_noise import FreeNoise
from animatediff.pipeline.ip_adapter import IPAdapter
from animatediff.pipeline.ip_call import ImageEmbeds, release_ip_adapter
from tests.diffusers_reference import diffusers_adapter, diffusers_motion_unet

ARGS = dict(
    prompt="a red circle moving left",
    negative_prompt="blurry",
    num_frames=6,
    height=16,
    width=16,
    num_inference_steps=3,
    guidance_scale=7.5,
)


def tiny_image_encoder(folder: Path, projection_dim: int = 16, seed: int = 5) -> Path:
    """A tiny random CLIPVisionModelWithProjection saved to `folder` (32×32 images, 65 tokens of width 32)."""
    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        projection_dim=projection_dim,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=4,
    )
    CLIPVisionModelWithProjection(config).eval().save_pretrained(folder)
    return folder


def _plus_projection(width: int, seed: int) -> dict[str, torch.Tensor]:
    """A random IP-Adapter Plus resampler in the original layout (what diffusers' loader converts from)."""
    torch.manual_seed(seed)
    proj = IPAdapterPlusImageProjection(embed_dims=32, output_dims=width, hidden_dims=64, heads=1, num_queries=4)
    out = {}
    for key, value in proj.state_dict().items():
        value = value + 0.05 * torch.randn_like(value)  # no tensor left at its init (e.g. LayerNorms at 1, 0)
        parts = key.split(".")
        if parts[0] != "layers":
            out[key] = value
            continue
        i, rest = parts[1], ".".join(parts[2:])
        names = {"ln0.weight": "0.norm1.weight", "ln0.bias": "0.norm1.bias", "ln1.weight": "0.norm2.weight",
                 "ln1.bias": "0.norm2.bias", "attn.to_q.weight": "0.to_q.weight",
                 "attn.to_out.0.weight": "0.to_out.weight", "ff.0.weight": "1.0.weight", "ff.0.bias": "1.0.bias",
                 "ff.1.net.0.proj.weight": "1.1.weight", "ff.1.net.2.weight": "1.3.weight"}  # fmt: skip
        if rest == "attn.to_k.weight":  # to_k then to_v, joined as the original to_kv
            out[f"layers.{i}.0.to_kv.weight"] = value
        elif rest == "attn.to_v.weight":
            out[f"layers.{i}.0.to_kv.weight"] = torch.cat([out[f"layers.{i}.0.to_kv.weight"], value])
        else:
            out[f"layers.{i}.{names[rest]}"] = value
    return out


def tiny_ip_adapter(
    unet, kind: str = "ip-adapter", width: int | None = None, embed_dim: int = 16, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random IP-Adapter weights for the 2-D `unet` in diffusers' file layout (image_proj.*, ip_adapter.*); `width`:
    the cross-attention width it is made for (the UNet's unless given)."""
    layers = [m for m in unet.modules() if isinstance(m, Attention) and m.is_cross_attention]
    width = width or unet.config.cross_attention_dim
    g = torch.Generator().manual_seed(seed)
    if kind == "ip-adapter":
        proj = {
            "proj.weight": 0.3 * torch.randn(4 * width, embed_dim, generator=g),
            "proj.bias": 0.1 * torch.randn(4 * width, generator=g),
            "norm.weight": 1 + 0.1 * torch.randn(width, generator=g),
            "norm.bias": 0.1 * torch.randn(width, generator=g),
        }
    else:
        proj = _plus_projection(width, seed)
    sd = {f"image_proj.{k}": v for k, v in proj.items()}
    for i, layer in enumerate(layers):
        for name in ("to_k_ip", "to_v_ip"):
            sd[f"ip_adapter.{2 * i + 1}.{name}.weight"] = 0.5 * torch.randn(layer.to_k.out_features, width, generator=g)
    return sd


def sample_image(seed: int = 0, size: tuple[int, int] = (40, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8))


@pytest.fixture
def ip_folder(tmp_path, make_pipeline):
    """(pipeline, folder with ip.safetensors, ip_plus.safetensors and image_encoder/ as in h94/IP-Adapter)."""
    pipe = make_pipeline("v2")
    folder = tmp_path / "ip"
    folder.mkdir()
    save_file(tiny_ip_adapter(pipe.unet.unet), str(folder / "ip.safetensors"))
    save_file(tiny_ip_adapter(pipe.unet.unet, "plus"), str(folder / "ip_plus.safetensors"))
    tiny_image_encoder(folder / "image_encoder")
    return pipe, folder


def diffusers_reference(ours: AnimationPipeline, folder: Path, weight_name: str, scale: float, free_noise=None):  # noqa: ANN001, ANN201
    """diffusers' AnimateDiffPipeline on our weights (per-frame motion norm, as the official code), with the
    IP-Adapter loaded by its own `load_ip_adapter` and scaled by `set_ip_adapter_scale`."""
    encoder = CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder").eval()
    reference = AnimateDiffPipeline(
        vae=ours.vae,
        text_encoder=ours.text_encoder,
        tokenizer=ours.tokenizer,
        unet=diffusers_motion_unet(ours.unet.unet, ours.unet.motion_modules),
        motion_adapter=diffusers_adapter(ours.unet.motion_modules) if free_noise else None,
        scheduler=ours.scheduler,
        feature_extractor=None,  # made by load_ip_adapter from the encoder's image size
        image_encoder=encoder,
    )
    reference.set_progress_bar_config(disable=True)
    reference.load_ip_adapter(str(folder), subfolder="", weight_name=weight_name, image_encoder_folder=None)
    reference.set_ip_adapter_scale(scale)
    if free_noise is not None:
        f = free_noise
        reference.enable_free_noise(f.context_length, f.context_stride, f.weighting, f.noise_type)
    return reference


@pytest.mark.parametrize(
    "weight_name, images, scale",
    [
        ("ip.safetensors", [sample_image(0)], 0.7),
        ("ip.safetensors", [sample_image(1), sample_image(2, (30, 20))], 1.0),  # two images seen together
        ("ip_plus.safetensors", [sample_image(0)], 0.6),  # Plus: the encoder's penultimate hidden states
    ],
)
def test_pipeline_matches_diffusers_ip_adapter(ip_folder, one_thread, weight_name, images, scale):
    ours, folder = ip_folder
    reference = diffusers_reference(ours, folder, weight_name, scale)
    image = images if len(images) > 1 else images[0]
    ip_image = [images] if len(images) > 1 else images[0]
    expected = reference(
        **ARGS, ip_adapter_image=ip_image, generator=torch.Generator().manual_seed(7), output_type="np"
    )
    got = ours(**ARGS, seed=7, progress=False, ip_adapter=IPAdapter(folder / weight_name, image, scale))
    plain = ours(**ARGS, seed=7, progress=False)
    assert got.shape == (1, 6, 16, 16, 3)
    assert np.abs(np.diff(got, axis=1)).mean() > 1e-3  # frames differ: the motion modules are active
    assert np.abs(got - plain).mean() > 1e-2  # the image prompt steers the frames
    np.testing.assert_allclose(got, expected.frames, rtol=0, atol=1e-4)


def test_pipeline_matches_diffusers_ip_adapter_with_free_noise(ip_folder, one_thread):
    ours, folder = ip_folder
    free_noise = FreeNoise(4, 2, "pyramid", "shuffle_context")
    reference = diffusers_reference(ours, folder, "ip.safetensors", 0.8, free_noise)
    args = {**ARGS, "num_frames": 8}
    generator = torch.Generator().manual_seed(3)
    expected = reference(**args, ip_adapter_image=sample_image(), generator=generator, output_type="np").frames
    ip_adapter = IPAdapter(folder / "ip.safetensors", sample_image(), 0.8)
    got = ours(**args, seed=3, progress=False, free_noise=free_noise, ip_adapter=ip_adapter)
    assert got.shape == (1, 8, 16, 16, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def _unet_state(pipe: AnimationPipeline) -> dict:
    unet = pipe.unet.unet
    return {
        "processors": [(name, id(p), type(p)) for name, p in unet.attn_processors.items()],
        "state_dict": {k: v.clone() for k, v in unet.state_dict().items()},
        "modules": [name for name, _ in unet.named_modules()],
        "encoder_hid_proj": ("encoder_hid_proj" in unet._modules, unet.encoder_hid_proj),
        "hid_dim_type": unet.config.encoder_hid_dim_type,
        "shared": pipe.unet._context_is_shared(),
    }


def _same(a: dict, b: dict) -> bool:
    sd_a, sd_b = a["state_dict"], b["state_dict"]
    rest = [k for k in a if k != "state_dict"]
    same_rest = all(a[k] == b[k] for k in rest) and a.keys() == b.keys()
    return same_rest and sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


def test_the_unet_is_exactly_as_before_after_a_call_or_a_failure(ip_folder, one_thread):
    pipe, folder = ip_folder
    before_frames = pipe(**ARGS, seed=1, progress=False)
    before = _unet_state(pipe)
    assert before["shared"] and before["encoder_hid_proj"] == (False, None) and before["hid_dim_type"] is None
    ip_adapter = IPAdapter(folder / "ip.safetensors", sample_image(), 0.5)
    pipe(**ARGS, seed=1, progress=False, ip_adapter=ip_adapter)
    assert _same(_unet_state(pipe), before)

    class Failing:
        def unet_kwargs(self, x, t, text, frames):  # noqa: ANN001, ANN201
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        pipe(**ARGS, seed=1, progress=False, ip_adapter=ip_adapter, conditions=[Failing()])
    assert _same(_unet_state(pipe), before)
    np.testing.assert_array_equal(pipe(**ARGS, seed=1, progress=False), before_frames)


def test_scale_zero_is_the_text_alone(ip_folder, one_thread):
    pipe, folder = ip_folder
    plain = pipe(**ARGS, seed=2, progress=False)
    got = pipe(**ARGS, seed=2, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", sample_image(), 0.0))
    np.testing.assert_allclose(got, plain, rtol=0, atol=1e-5)  # per-frame text (IP-Adapter) vs shared: float noise


def test_each_context_window_gets_its_own_embeds(ip_folder, one_thread, monkeypatch):
    pipe, folder = ip_folder
    seen = []
    original = ImageEmbeds.unet_kwargs

    def spy(self, x, t, text, frames):  # noqa: ANN001, ANN202
        kwargs = original(self, x, t, text, frames)
        seen.append((x.shape[0], x.shape[2], tuple(frames.tolist()), kwargs["added_cond_kwargs"]["image_embeds"][0]))
        return kwargs

    monkeypatch.setattr(ImageEmbeds, "unet_kwargs", spy)
    ip_adapter = IPAdapter(folder / "ip.safetensors", sample_image(), 0.8)
    args = {**ARGS, "num_frames": 10, "num_inference_steps": 2}
    got = pipe(**args, seed=4, progress=False, context_length=6, context_overlap=2, ip_adapter=ip_adapter)
    plain = pipe(**args, seed=4, progress=False, context_length=6, context_overlap=2)
    assert got.shape == (1, 10, 16, 16, 3) and np.isfinite(got).all()
    assert np.abs(got - plain).mean() > 1e-2
    assert [s[2] for s in seen] == [tuple(range(6)), tuple(range(4, 10))] * 2  # 2 windows × 2 steps
    for videos, frames, _, embeds in seen:
        assert (videos, frames) == (2, 6) and embeds.shape == (videos * frames, 1, 16)
        assert torch.count_nonzero(embeds[:frames]) == 0  # the unconditional video's rows: zeros, as diffusers
        assert torch.equal(embeds[frames:], embeds[frames : frames + 1].expand(frames, 1, 16))


def test_unguided_calls_give_no_negative(ip_folder, one_thread):
    pipe, folder = ip_folder
    ip_adapter = IPAdapter(folder / "ip.safetensors", sample_image(), 1.0)
    got = pipe(**{**ARGS, "guidance_scale": 1.0, "prompt": ["a", "b"], "negative_prompt": None}, seed=5,
               progress=False, ip_adapter=ip_adapter)  # fmt: skip
    assert got.shape == (2, 6, 16, 16, 3) and np.isfinite(got).all()


def test_loaded_parts_are_kept_for_the_next_call(ip_folder, one_thread, monkeypatch):
    pipe, folder = ip_folder
    loads = []
    load = ip_module.load_image_encoder
    monkeypatch.setattr(ip_module, "load_image_encoder", lambda *a, **k: loads.append(a[0]) or load(*a, **k))
    for scale in (0.3, 0.9):
        pipe(
            **{**ARGS, "num_inference_steps": 1},
            progress=False,
            ip_adapter=IPAdapter(folder / "ip.safetensors", sample_image(), scale),
        )
    assert len(loads) == 1
    release_ip_adapter(pipe)
    pipe(
        **{**ARGS, "num_inference_steps": 1},
        progress=False,
        ip_adapter=IPAdapter(folder / "ip.safetensors", sample_image()),
    )
    assert len(loads) == 2


def test_bin_and_safetensors_read_alike(tmp_path, ip_folder):
    _, folder = ip_folder
    groups, _ = read_ip_adapter(folder / "ip.safetensors")
    torch.save(groups, tmp_path / "ip.bin")  # the original repository's pickles: two nested dicts
    again, _ = read_ip_adapter(tmp_path / "ip.bin")
    assert again.keys() == groups.keys() == {"image_proj", "ip_adapter"}
    assert all(torch.equal(again[g][k], groups[g][k]) for g in groups for k in groups[g])


@pytest.fixture
def no_denoising(monkeypatch):
    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("denoising started")

    monkeypatch.setattr(animation_module, "denoise", fail)


def test_bad_ip_adapters_are_one_line_errors_before_denoising(ip_folder, tmp_path, no_denoising):
    pipe, folder = ip_folder
    image = sample_image()

    def call(weights, encoder=None):  # noqa: ANN001, ANN202
        return pipe(**ARGS, progress=False, ip_adapter=IPAdapter(weights, image, 1.0, encoder))

    save_file(tiny_ip_adapter(pipe.unet.unet, width=48), str(tmp_path / "sdxl.safetensors"))
    with pytest.raises(InputError, match="cross-attention width 48, this base has 32"):
        call(tmp_path / "sdxl.safetensors", folder / "image_encoder")
    save_file(tiny_ip_adapter(pipe.unet.unet), str(tmp_path / "alone.safetensors"))
    with pytest.raises(InputError, match="no image encoder.*--image-encoder"):
        call(tmp_path / "alone.safetensors")
    tiny_image_encoder(tmp_path / "wide_encoder", projection_dim=24)
    with pytest.raises(InputError, match="projection_dim 24, the IP-Adapter takes 16"):
        call(tmp_path / "alone.safetensors", tmp_path / "wide_encoder")
    with pytest.raises(InputNotFound, match="image encoder not found"):
        call(tmp_path / "alone.safetensors", tmp_path / "nowhere")
    save_file({"proj.weight": torch.zeros(2, 2)}, str(tmp_path / "lora.safetensors"))
    with pytest.raises(InputError, match="not an IP-Adapter in diffusers' layout"):
        call(tmp_path / "lora.safetensors")
    save_file({"image_proj.norm.weight": torch.ones(32), "ip_adapter.1.to_k_ip.weight": torch.ones(32, 32)},
              str(tmp_path / "faceid.safetensors"))  # fmt: skip
    with pytest.raises(InputError, match="FaceID"):
        call(tmp_path / "faceid.safetensors")
    with pytest.raises(InputNotFound, match="IP-Adapter not found"):
        call(tmp_path / "missing.safetensors")
    (tmp_path / "not_an_image.png").write_text("text")
    with pytest.raises(InputError, match="not a readable image"):
        pipe(**ARGS, progress=False, ip_adapter=IPAdapter(folder / "ip.safetensors", tmp_path / "not_an_image.png"))
    with pytest.raises(InputError, match="must be an IPAdapter"):
        pipe(**ARGS, progress=False, ip_adapter=str(folder / "ip.safetensors"))
    assert _unet_state(pipe)["shared"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scale": -0.5}, r"scale -0.5 must be a number ≥ 0"),
        ({"scale": float("nan")}, r"scale nan must be a number ≥ 0"),
        ({"scale": True}, r"scale True must be a number ≥ 0"),
        ({"image": []}, "a list of them"),
        ({"image": [3]}, "give a file path or a PIL image"),
        ({"weights": ""}, "weights must be a path"),
        ({"image_encoder": 3}, "image encoder must be a folder"),
    ],
)
def test_bad_options_fail_at_once(kwargs, message):
    options = {"weights": "ip.safetensors", "image": "a.png", **kwargs}
    with pytest.raises(InputError, match=message):
        IPAdapter(**options)
