import json
import os

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from animatediff.base_model import load_base
from animatediff.cli import main
from animatediff.errors import InputError, InputNotFound
from animatediff.formats import save_motion_modules
from animatediff.formats.ldm_export import VAE_PREFIX, ldm_vae_state_dict
from animatediff.formats.vae_file import load_vae
from animatediff.model_cache import ModelCache, PipelineSpec
from animatediff.pipeline import AnimationPipeline
from tests.diffusers_reference import diffusers_pipeline
from tests.ldm_checkpoint import ldm_state_dict, save_ldm_checkpoint
from tests.tiny import tiny_motion, tiny_text_encoder, tiny_unet, tiny_vae

RUN = dict(num_frames=3, num_inference_steps=2, seed=11, progress=False)
OLD_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _diffusers_sd(vae: AutoencoderKL) -> dict[str, torch.Tensor]:
    return {k: v.clone().contiguous() for k, v in vae.state_dict().items()}


def _old_attention_names(vae: AutoencoderKL) -> dict[str, torch.Tensor]:
    """As diffusers < 0.14 saved VAEs: mid-block attention as query / key / value / proj_attn."""
    sd = {}
    for key, value in _diffusers_sd(vae).items():
        for new, old in OLD_ATTENTION.items():
            key = key.replace(f".attentions.0.{new}.", f".attentions.0.{old}.")
        sd[key] = value
    return sd


def _write(form: str, vae: AutoencoderKL, tmp_path, tokenizer) -> os.PathLike:  # noqa: ANN001
    """`vae` written in one of the forms a user may pass as --vae."""
    if form == "diffusers folder":
        vae.save_pretrained(tmp_path / "vae-folder")
        return tmp_path / "vae-folder"
    if form == "pipeline folder":
        vae.save_pretrained(tmp_path / "pipe" / "vae")
        (tmp_path / "pipe" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
        return tmp_path / "pipe"
    if form == "folder of one LDM file":
        (tmp_path / "one").mkdir()
        save_file(ldm_vae_state_dict(vae), tmp_path / "one" / "vae-ft-mse.safetensors")
        return tmp_path / "one"
    path = tmp_path / form.replace(" ", "_")
    if form == "LDM vae.safetensors":
        save_file(ldm_vae_state_dict(vae), path)
    elif form == "LDM prefixed.safetensors":
        save_file(ldm_vae_state_dict(vae, VAE_PREFIX), path)
    elif form == "LDM whole-model.safetensors":
        save_ldm_checkpoint(path, tiny_unet(seed=5), vae, tiny_text_encoder(len(tokenizer), seed=7))
    elif form == "LDM vae.ckpt":
        torch.save({"state_dict": ldm_vae_state_dict(vae), "global_step": 840000}, path)
    elif form == "LDM whole-model.ckpt":
        save_ldm_checkpoint(path, tiny_unet(seed=5), vae, tiny_text_encoder(len(tokenizer), seed=7), wrap=True)
    elif form == "diffusers vae.safetensors":
        save_file(_diffusers_sd(vae), path)
    elif form == "diffusers-old-names vae.bin":
        torch.save(_old_attention_names(vae), path)
    return path


FORMS = [
    "diffusers folder",
    "pipeline folder",
    "folder of one LDM file",
    "LDM vae.safetensors",
    "LDM prefixed.safetensors",
    "LDM whole-model.safetensors",
    "LDM vae.ckpt",
    "LDM whole-model.ckpt",
    "diffusers vae.safetensors",
    "diffusers-old-names vae.bin",
]


@pytest.mark.parametrize("form", FORMS)
def test_every_form_loads_to_the_same_weights(form, tmp_path, tokenizer):
    other, like = tiny_vae(seed=6), tiny_vae()
    loaded = load_vae(_write(form, other, tmp_path, tokenizer), like)
    assert loaded is not like and not _same_weights(like, other)
    assert _same_weights(loaded, other)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(like.config) and not loaded.training


def test_the_vae_takes_the_base_vae_dtype_and_scaling_factor(tmp_path, tokenizer):
    other = tiny_vae(seed=6)
    other.register_to_config(scaling_factor=0.5)  # a folder's own config: the base's scaling factor still wins
    like = tiny_vae().to(torch.bfloat16)
    like.register_to_config(scaling_factor=0.13025)
    loaded = load_vae(_write("diffusers folder", other, tmp_path, tokenizer), like)
    assert loaded.dtype == torch.bfloat16 and loaded.config.scaling_factor == 0.13025
    assert torch.equal(loaded.decoder.conv_out.weight, other.decoder.conv_out.weight.to(torch.bfloat16))


def test_a_hub_id_is_fetched_through_the_hub(tmp_path, tokenizer, monkeypatch):
    import huggingface_hub

    other = tiny_vae(seed=6)
    snapshot = _write("diffusers folder", other, tmp_path, tokenizer)
    asked = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: asked.append(repo) or str(snapshot))
    assert _same_weights(load_vae("stabilityai/sd-vae-ft-mse", tiny_vae()), other)
    assert asked == ["stabilityai/sd-vae-ft-mse"]


def test_generating_with_the_vae_equals_swapping_the_module(base_folder, tmp_path, tokenizer):
    other = tiny_vae(seed=6)
    path = _write("LDM vae.safetensors", other, tmp_path, tokenizer)
    motion = tiny_motion("v3")
    with_file = AnimationPipeline.from_pretrained(base_folder, motion, vae=path)
    swapped = AnimationPipeline.from_pretrained(base_folder, motion)
    plain = swapped("a knight", **RUN)
    swapped.vae = other
    video = with_file("a knight", **RUN)
    np.testing.assert_array_equal(video, swapped("a knight", **RUN))
    assert np.abs(video - plain).max() > 1e-3


def test_the_vae_matches_diffusers_animatediff_pipeline_with_that_vae(base_folder, tmp_path, tokenizer):
    other = tiny_vae(seed=6)
    ours = AnimationPipeline.from_pretrained(
        base_folder, tiny_motion("v2"), vae=_write("LDM prefixed.safetensors", other, tmp_path, tokenizer)
    )
    reference = diffusers_pipeline(ours, vae=other)
    args = dict(prompt="a red circle", negative_prompt="blurry", num_frames=4, height=16, width=16)
    args.update(num_inference_steps=3, guidance_scale=7.5)
    expected = reference(**args, generator=torch.Generator("cpu").manual_seed(7), output_type="np").frames
    got = ours(**args, seed=7, progress=False)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_the_vae_wins_over_the_dreambooth_baked_vae(base_folder, tmp_path, tokenizer):
    personal = tiny_unet(seed=5), tiny_vae(seed=8), tiny_text_encoder(len(tokenizer), seed=7)
    save_ldm_checkpoint(tmp_path / "personal.safetensors", *personal)
    other = tiny_vae(seed=6)
    base = load_base(
        base_folder, dreambooth=tmp_path / "personal.safetensors", vae=_write("diffusers folder", other, tmp_path, None)
    )
    assert _same_weights(base.vae, other)
    assert _same_weights(base.unet, personal[0]) and _same_weights(base.text_encoder, personal[2])


class _Runs:
    """A pickled object that would create a file when unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.path, "w"))


def _latent16() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        latent_channels=16,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 32),
        layers_per_block=1,
        norm_num_groups=32,
    )


def _bad(case: str, tmp_path, tokenizer) -> os.PathLike:  # noqa: ANN001
    path = tmp_path / "bad.safetensors"
    if case == "missing":
        return tmp_path / "nowhere" / "vae.safetensors"
    if case == "garbage safetensors":
        path.write_bytes(b"\x00" * 64)
    elif case == "garbage ckpt":
        path = tmp_path / "bad.ckpt"
        path.write_bytes(b"not a pickle")
    elif case == "code in a pickle":
        path = tmp_path / "bad.ckpt"
        torch.save({"state_dict": _Runs(str(tmp_path / "ran"))}, path)
    elif case == "a text file":
        path = tmp_path / "vae.txt"
        path.write_text("vae")
    elif case == "a LoRA":
        save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, path)
    elif case == "a checkpoint without a VAE":
        sd = ldm_state_dict(tiny_unet(), tiny_vae(), tiny_text_encoder(len(tokenizer)))
        save_file({k: v for k, v in sd.items() if not k.startswith(VAE_PREFIX)}, path)
    elif case == "UNet weights":
        save_file(_diffusers_sd(tiny_unet()), path)
    elif case == "16 latent channels":
        save_file(_diffusers_sd(_latent16()), path)
    elif case == "a 16-channel folder":
        _latent16().save_pretrained(tmp_path / "vae16")
        return tmp_path / "vae16"
    elif case == "a weight missing":
        sd = ldm_vae_state_dict(tiny_vae())
        del sd["decoder.conv_out.weight"]
        save_file(sd, path)
    elif case == "a UNet folder":
        tiny_unet().save_pretrained(tmp_path / "unet")
        return tmp_path / "unet"
    elif case == "an empty folder":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty"
    return path


BAD = [
    ("missing", InputNotFound, "VAE not found"),
    ("garbage safetensors", InputError, "not a readable safetensors file"),
    ("garbage ckpt", InputError, "not a readable torch checkpoint"),
    ("code in a pickle", InputError, "not a readable torch checkpoint"),
    ("a text file", InputError, "unsupported weights file extension '.txt'"),
    ("a LoRA", InputError, r"holds no VAE weights .*a LoRA \(use --lora\)"),
    ("a checkpoint without a VAE", InputError, "holds no VAE weights .*single-file SD checkpoint without a VAE"),
    ("UNet weights", InputError, "holds no VAE weights .*UNet weights"),
    ("16 latent channels", InputError, r"a VAE with 16-channel latents \(SD3 or Flux\), the base's VAE has 4"),
    ("a 16-channel folder", InputError, "a VAE with 16-channel latents"),
    ("a weight missing", InputError, r"VAE weights do not match the base model's VAE: 1 missing"),
    ("a UNet folder", InputError, r"holds a UNet2DConditionModel, not a VAE"),
    ("an empty folder", InputNotFound, "not a VAE folder"),
]


@pytest.mark.parametrize("case, error, message", BAD)
def test_bad_vae_is_one_clear_line(case, error, message, tmp_path, tokenizer):
    with pytest.raises(error, match=message) as raised:
        load_vae(_bad(case, tmp_path, tokenizer), tiny_vae())
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "ran").exists()


@pytest.fixture
def motion_file(tmp_path):
    return save_motion_modules(tiny_motion("v2"), tmp_path / "mm.safetensors")


def _generate(base_folder, motion_file, tmp_path, *extra: str) -> int:  # noqa: ANN001
    return main(["generate", "--base", str(base_folder), "--motion-module", str(motion_file), "--prompt", "a fox",
                 "--frames", "2", "--steps", "1", "--seed", "4", "--output", str(tmp_path / "out.npy"), "--quiet",
                 *extra])  # fmt: skip


def test_cli_generates_with_the_vae(base_folder, motion_file, tmp_path, tokenizer):
    path = _write("LDM vae.safetensors", tiny_vae(seed=6), tmp_path, tokenizer)
    assert _generate(base_folder, motion_file, tmp_path, "--vae", str(path)) == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, motion_file, vae=path)
    expected = pipe("a fox", num_frames=2, num_inference_steps=1, seed=4, progress=False)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


def test_cli_says_a_missing_vae_in_one_line_before_loading(base_folder, motion_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(AnimationPipeline, "from_pretrained", lambda *a, **k: pytest.fail("a model loaded"))
    rc = _generate(base_folder, motion_file, tmp_path, "--vae", str(tmp_path / "missing.safetensors"))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1
    assert "VAE not found" in lines[0] and "missing.safetensors" in lines[0]


def test_model_cache_reloads_the_base_for_another_vae_only(base_folder, motion_file, tmp_path, tokenizer):
    first, second = tiny_vae(seed=6), tiny_vae(seed=8)
    a = str(_write("LDM vae.safetensors", first, tmp_path, tokenizer))
    b = str(_write("diffusers vae.safetensors", second, tmp_path, tokenizer))
    base, motion, cache = str(base_folder), str(motion_file), ModelCache()
    cache.pipeline(PipelineSpec(base, motion))
    pipe = cache.pipeline(PipelineSpec(base, motion, vae=a))
    assert cache.loads["base"] == 2 and cache.loads["vae"] == 1 and _same_weights(pipe.vae, first)
    assert cache.pipeline(PipelineSpec(base, motion, vae=a)) is pipe and cache.loads["base"] == 2
    pipe = cache.pipeline(PipelineSpec(base, motion, vae=b))
    assert cache.loads["base"] == 3 and cache.loads["vae"] == 2 and _same_weights(pipe.vae, second)
    pipe = cache.pipeline(PipelineSpec(base, motion))
    assert cache.loads["base"] == 4 and _same_weights(pipe.vae, load_base(base_folder).vae)
