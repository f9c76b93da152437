import copy
import hashlib

import pytest
import torch
from safetensors import safe_open

import animatediff.world.personalize as personalize
from animatediff.base_model import load_base
from animatediff.formats.ldm_export import ldm_state_dict
from animatediff.formats.lora import load_lora
from animatediff.formats.single_file import read_single_file
from animatediff.models import MotionModules
from animatediff.pipeline import AnimationPipeline
from animatediff.world.base_model import (
    BaseModelConfig,
    build_text_encoder,
    build_unet,
    build_vae,
    motion_module_config,
    save_base_folder,
)
from animatediff.world.personalize import PersonalizeConfig, train_dreambooth, train_lora
from animatediff.world.tokenizer import world_tokenizer

TINY = BaseModelConfig(resolution=16, vae_channels=(32, 32), unet_channels=(32, 64), text_width=32)
# A handful of steps on a few images: seconds on one thread.
QUICK = dict(steps=3, batch_size=4, num_images=8, num_prior_images=8, warmup_steps=1, progress=False)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world_base(tmp_path_factory):
    """A tiny untrained world base in the SD1.5 folder layout."""
    root = tmp_path_factory.mktemp("personalize_base")
    tokenizer = world_tokenizer(root / "tokenizer_src")
    parts = dict(tokenizer=tokenizer, text_encoder=build_text_encoder(tokenizer, TINY), vae=build_vae(TINY))
    return save_base_folder(root / "base", unet=build_unet(TINY), **parts)


def _digest(folder) -> dict[str, str]:  # noqa: ANN001
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.*")}


def _spy(monkeypatch, name: str) -> dict:  # noqa: ANN001
    """Record what `personalize` passes to its writer `name`, then write as usual."""
    seen, real = {}, getattr(personalize, name)

    def spy(model, *args, **kwargs):  # noqa: ANN001, ANN202
        seen["model"] = copy.deepcopy(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(personalize, name, spy)
    return seen


def test_dreambooth_file_loads_to_the_fine_tuned_unet_and_the_base_vae_and_text_encoder(
    world_base, tmp_path, monkeypatch
):
    on_disk = _digest(world_base)
    seen = _spy(monkeypatch, "save_single_file")
    figures = train_dreambooth(world_base, tmp_path / "style.safetensors", PersonalizeConfig(**QUICK))
    assert figures["method"] == "dreambooth" and figures["steps"] == 3 and figures["minutes"] > 0
    assert _digest(world_base) == on_disk  # the base's files are untouched

    tuned = seen["model"].state_dict()
    base = load_base(world_base)
    assert any(not torch.equal(v, base.unet.state_dict()[k]) for k, v in tuned.items())
    motion = MotionModules(motion_module_config(TINY))
    pipe = AnimationPipeline.from_pretrained(world_base, motion, dreambooth=tmp_path / "style.safetensors")
    for loaded, expected in ((pipe.unet.unet, tuned), (pipe.vae, base.vae.state_dict()),
                             (pipe.text_encoder, base.text_encoder.state_dict())):  # fmt: skip
        sd = loaded.state_dict()
        assert sd.keys() == expected.keys()
        assert all(torch.equal(sd[k], expected[k]) for k in sd), type(loaded).__name__
    # ours → diffusers' converter → ours gives back the file, tensor for tensor.
    file = read_single_file(tmp_path / "style.safetensors")
    again = ldm_state_dict(pipe.unet.unet, pipe.vae, pipe.text_encoder)
    assert file.keys() == again.keys() and all(torch.equal(file[k], again[k]) for k in file)
    with safe_open(str(tmp_path / "style.safetensors"), "pt") as f:
        assert '"kind": "style"' in f.metadata()["animatediff.personalize"]


def test_kohya_lora_merges_like_peft_and_only_into_attention(world_base, tmp_path, monkeypatch):
    on_disk = _digest(world_base)
    seen = _spy(monkeypatch, "save_kohya_lora")
    cfg = PersonalizeConfig(kind="object", lora_rank=4, lora_alpha=2.0, lr=1e-2, **QUICK)
    figures = train_lora(world_base, tmp_path / "star.safetensors", cfg)
    assert figures["method"] == "lora" and figures["trainable_parameters"] > 0
    assert _digest(world_base) == on_disk

    # The file: kohya names, a scalar alpha per layer, one layer per attention projection.
    lora = load_lora(tmp_path / "star.safetensors")
    projections = [n for n, _ in build_unet(TINY).named_modules() if n.endswith(personalize.ATTENTION_PROJECTIONS)]
    assert len(lora.layers) == len(projections) == 4 * 2 * 4  # q, k, v, out × attn1, attn2 × 4 transformers
    assert {(layer.rank, layer.alpha, layer.underscored) for layer in lora.layers} == {(4, 2.0, True)}

    # PEFT's own merge of the trained adapter …
    peft_unet = seen["model"]
    from peft.tuners.tuners_utils import BaseTunerLayer

    merged = {}
    for name, module in peft_unet.named_modules():
        if isinstance(module, BaseTunerLayer):
            module.merge()
            merged[f"{name}.weight"] = module.get_base_layer().weight
    # … equals the kohya file merged into the base through the pipeline's loader.
    pipe = AnimationPipeline.from_pretrained(world_base, MotionModules(motion_module_config(TINY)))
    pipe.add_lora(tmp_path / "star.safetensors")
    ours, base = pipe.unet.unet.state_dict(), load_base(world_base).unet.state_dict()
    assert set(merged) == {f"{n}.weight" for n in projections}
    for key, value in ours.items():
        if key in merged:
            torch.testing.assert_close(value, merged[key], rtol=0, atol=1e-5)
        else:
            assert torch.equal(value, base[key]), key  # biases, norms, convolutions, feed-forwards untouched
    assert max((ours[k] - base[k]).abs().max().item() for k in merged) > 1e-4  # the LoRA did train


@pytest.mark.parametrize("method, lr", [("dreambooth", 1e-3), ("lora", 1e-2)])
def test_training_lowers_the_loss_on_the_personalization_images(world_base, tmp_path, method, lr):
    cfg = PersonalizeConfig(**{**QUICK, "steps": 30, "batch_size": 8, "num_images": 16}, lr=lr, method=method)
    figures = personalize.personalize(world_base, tmp_path / f"{method}.safetensors", cfg)
    before, after = figures["personal_loss_before"], figures["personal_loss_after"]
    print(f"{method}: fixed personal loss {before:.4f} → {after:.4f}, prior "
          f"{figures['prior_loss_before']:.4f} → {figures['prior_loss_after']:.4f}")  # fmt: skip
    assert after < 0.9 * before, (before, after)


def test_personalization_and_prior_batches_mix_as_configured(world_base):
    base = load_base(world_base)
    cfg = PersonalizeConfig(**{**QUICK, "batch_size": 8}, prior_fraction=0.25)
    data = personalize.encode_personalization(base.vae, cfg, base.traits.native_size)
    latents, captions = data.batch(cfg, torch.Generator().manual_seed(0))
    assert latents.shape == (8, 4, 8, 8)
    assert all("outlined" in c for c in captions[:6]) and not any("outlined" in c for c in captions[6:])
    no_prior = personalize.encode_personalization(base.vae, PersonalizeConfig(**QUICK, prior_fraction=0.0), 16)
    assert no_prior.prior is None


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(kind="hat"), "unknown personalization kind 'hat'; choose one of: style, object"),
        (dict(method="textual_inversion"), "unknown personalization method 'textual_inversion'"),
        (dict(prior_fraction=1.0), "prior_fraction"),
        (dict(batch_size=2, prior_fraction=0.8), "leaves no personalization image"),
        (dict(steps=0), "steps must be at least 1"),
    ],
)
def test_bad_configs_have_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        PersonalizeConfig(**fields)


def test_bad_paths_have_clear_errors(world_base, tmp_path):
    cfg = PersonalizeConfig(**QUICK)
    with pytest.raises(FileNotFoundError, match="base model not found"):
        train_dreambooth(tmp_path / "no-such-base", tmp_path / "out.safetensors", cfg)
    with pytest.raises(ValueError, match=r"written as \.safetensors"):
        train_lora(world_base, tmp_path / "out.ckpt", cfg)
    import shutil

    shutil.copytree(world_base, tmp_path / "half", ignore=shutil.ignore_patterns("scheduler"))
    with pytest.raises(FileNotFoundError, match="scheduler"):
        train_lora(tmp_path / "half", tmp_path / "out.safetensors", cfg)
    assert not list(tmp_path.glob("out*"))
