import json
import tempfile
from dataclasses import replace

import pytest
import torch

from animatediff.base_model import load_base
from animatediff.world.base_model import BaseModelConfig, build_text_encoder, build_unet, build_vae
from animatediff.world.datasets import WorldImages
from animatediff.world.tokenizer import world_tokenizer
from animatediff.world.train_image import ImageRecipe, build_base_model
from animatediff.world.train_unet import CaptionEmbeddings, UnetTrainConfig, fixed_unet_loss, train_unet
from animatediff.world.train_vae import (
    VaeTrainConfig,
    encode_dataset,
    foreground_weights,
    reconstruction_loss,
    reconstruction_mse,
    set_scaling_factor,
    sharpen_vae,
    standardize_latents,
    train_vae,
    vae_loss,
)

TINY = BaseModelConfig(
    resolution=16, vae_channels=(32, 32), unet_channels=(32, 64), unet_attention=(False, True), text_width=32
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images():
    return WorldImages(64, seed=0, resolution=16)


def test_vae_training_lowers_reconstruction_error(images):
    vae = build_vae(TINY)
    pixels = torch.stack([images[i]["pixel_values"] for i in range(16)])
    before = reconstruction_mse(vae, pixels)
    # Unweighted, so the loss trained on is the plain MSE measured here (the object weighting has its own test).
    cfg = VaeTrainConfig(
        steps=30, sharpen_steps=10, batch_size=8, lr=2e-3, warmup_steps=5, object_weight=1.0, progress=False
    )
    log = train_vae(vae, images, cfg)
    after = reconstruction_mse(vae, pixels)
    assert len(log.losses) == 40 and log.seconds > 0
    assert after < 0.85 * before, (before, after)
    assert not any(p.requires_grad for p in vae.parameters())


def test_foreground_weights_cover_the_object_and_its_edge_on_any_background():
    from animatediff.world.render import render_image
    from animatediff.world.scenes import SceneSpec

    spec = SceneSpec("square", "yellow", "blue", x=0.3, y=0.6, size=0.2)
    pixels = torch.from_numpy(render_image(spec, 32).image).permute(2, 0, 1)[None].float() / 127.5 - 1
    weights = foreground_weights(pixels, 10.0)[0, 0]
    object_pixels = (pixels[0] - pixels[0, :, 0, 0, None, None]).abs().amax(0) > 0.1
    assert weights.shape == (32, 32) and set(weights.unique().tolist()) == {1.0, 10.0}
    assert (weights[object_pixels] == 10).all()  # the whole object
    heavy = int((weights == 10).sum())
    assert int(object_pixels.sum()) < heavy < 32 * 32 // 4  # plus a one-pixel rim, and no background beyond it
    assert weights[0, 0] == 1 and weights[-1, -1] == 1


def test_an_object_weight_makes_the_reconstruction_loss_count_the_object_more(images):
    pixels = torch.stack([images[i]["pixel_values"] for i in range(8)])
    recon = pixels + 0.1 * torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0))
    for l1 in (False, True):  # weight 1 is the plain loss, exactly
        plain = torch.nn.functional.l1_loss(recon, pixels) if l1 else torch.nn.functional.mse_loss(recon, pixels)
        assert torch.equal(reconstruction_loss(recon, pixels, l1), plain)
    # A reconstruction with the background right and the object wrong loses more once the object weighs more.
    wrong_object = torch.where(foreground_weights(pixels, 10.0) > 1, -pixels, pixels)
    assert reconstruction_loss(wrong_object, pixels, object_weight=10.0) > 2 * reconstruction_loss(wrong_object, pixels)
    # ... and one with the object right and the background wrong loses less.
    wrong_background = torch.where(foreground_weights(pixels, 10.0) > 1, pixels, -pixels)
    assert reconstruction_loss(wrong_background, pixels, object_weight=10.0) < reconstruction_loss(
        wrong_background, pixels
    )
    vae = build_vae(TINY).eval()
    loss, mse = vae_loss(vae, pixels, 0.0, torch.Generator().manual_seed(0), object_weight=10.0)
    assert loss != mse and mse > 0  # the reported MSE stays the plain one, comparable across recipes


def test_the_l1_phase_alone_continues_a_saved_vae_reproducibly(images):
    cfg = VaeTrainConfig(steps=0, sharpen_steps=6, batch_size=8, lr=2e-3, warmup_steps=2, progress=False)
    first, second = build_vae(TINY), build_vae(TINY)
    assert len(train_vae(first, images, cfg).losses) == 6  # no MSE phase: exactly the L1 phase
    sharpen_vae(second, images, cfg)
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)


def test_unet_training_lowers_the_denoising_loss(images):
    vae = build_vae(TINY).eval()
    cache = encode_dataset(vae, images, progress=False)
    assert cache.mean.shape == (64, 4, 8, 8) and len(cache.captions) == 64
    factor = set_scaling_factor(vae, cache)
    assert vae.config.scaling_factor == factor
    assert cache.sample(torch.arange(64), torch.Generator().manual_seed(0)).mul(factor).std() == pytest.approx(
        1, abs=0.01
    )

    tokenizer = world_tokenizer(tempfile.mkdtemp())
    text_encoder = build_text_encoder(tokenizer, TINY).eval()
    frozen = {k: v.clone() for k, v in text_encoder.state_dict().items()}
    unet = build_unet(TINY)
    latents = cache.mean[:8] * factor
    text = CaptionEmbeddings(tokenizer, text_encoder)(cache.captions[:8])
    before = fixed_unet_loss(unet, text, latents)
    cfg = UnetTrainConfig(
        steps=30,
        batch_size=8,
        lr=1e-3,
        warmup_steps=5,
        ema_decay=None,
        train_text_encoder=False,
        zero_terminal_snr=False,  # ε on the linear betas, the schedule fixed_unet_loss measures by default
        progress=False,
    )
    log = train_unet(unet, text_encoder, tokenizer, cache, factor, cfg)
    after = fixed_unet_loss(unet, text, latents)
    assert len(log.losses) == 30
    assert after < 0.8 * before, (before, after)
    # With train_text_encoder=False the text encoder stays as it was.
    for key, value in text_encoder.state_dict().items():
        torch.testing.assert_close(value, frozen[key])


def test_caption_embeddings_are_cached_per_caption():
    tokenizer = world_tokenizer(tempfile.mkdtemp())
    embed = CaptionEmbeddings(tokenizer, build_text_encoder(tokenizer, TINY).eval())
    out = embed(["a red circle on a black background", "", "a red circle on a black background"])
    assert out.shape == (3, 77, 32)
    torch.testing.assert_close(out[0], out[2])
    assert not torch.allclose(out[0], out[1])
    assert len(embed._memo) == 2


def test_build_base_model_writes_a_loadable_folder_and_keeps_a_trained_vae(tmp_path):
    quick = dict(steps=2, batch_size=4, progress=False)
    recipe = ImageRecipe(
        model=TINY, vae=VaeTrainConfig(**quick, sharpen_steps=2), unet=UnetTrainConfig(**quick), num_images=8
    )
    folder = build_base_model(tmp_path / "world", recipe)
    base = load_base(folder)
    report = json.loads((folder / "world.json").read_text())
    assert report["recipe"]["unet"]["caption_dropout"] == 0.1
    assert report["unet"]["scaling_factor"] == pytest.approx(base.vae.config.scaling_factor)
    assert "vae" in report

    # A second build keeps the trained VAE and retrains only the UNet.
    vae_before = base.vae.state_dict()
    build_base_model(folder, recipe)
    again = load_base(folder)
    for key, value in again.vae.state_dict().items():
        torch.testing.assert_close(value, vae_before[key])
    vae_report = json.loads((folder / "world.json").read_text())["vae"]
    assert vae_report["reused"] and vae_report["final_mse"] == report["vae"]["final_mse"]
    # A recipe with other VAE sizes does not silently reuse this one.
    other = BaseModelConfig(
        resolution=16, vae_channels=(32, 64), unet_channels=(32, 64), unet_attention=(False, True), text_width=32
    )
    with pytest.raises(ValueError, match="remove that vae/ folder"):
        build_base_model(folder, ImageRecipe(model=other, num_images=8))


def test_build_options_full_world_vae_and_standardized_latents(tmp_path):
    quick = dict(steps=2, batch_size=4, progress=False)
    recipe = ImageRecipe(
        model=TINY,
        vae=VaeTrainConfig(**quick, sharpen_steps=1),
        unet=UnetTrainConfig(**quick),
        num_images=8,
        vae_world="full",
        standardize_latents=True,
    )
    folder = build_base_model(tmp_path / "world", recipe)
    vae = load_base(folder).vae
    cache = encode_dataset(vae, WorldImages(8, seed=0, resolution=16), progress=False)
    assert cache.mean.mean(dim=(0, 2, 3)).abs().max() < 1e-3  # the saved VAE is the standardized one
    with pytest.raises(ValueError, match="vae_world"):
        build_base_model(tmp_path / "other", replace(recipe, vae_world="everything"))


def test_joint_text_encoder_training_updates_the_encoder(images):
    vae = build_vae(TINY).eval()
    cache = encode_dataset(vae, images, progress=False)
    tokenizer = world_tokenizer(tempfile.mkdtemp())
    text_encoder = build_text_encoder(tokenizer, TINY)
    before = {k: v.clone() for k, v in text_encoder.state_dict().items()}
    cfg = UnetTrainConfig(steps=2, batch_size=4, train_text_encoder=True, progress=False)
    train_unet(build_unet(TINY), text_encoder, tokenizer, cache, 1.0, cfg)
    changed = [k for k, v in text_encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert any("token_embedding" in k for k in changed) and any("layers.0" in k for k in changed)
    assert not any(p.requires_grad for p in text_encoder.parameters())


def test_standardized_latents_are_centred_and_decode_the_same(images):
    vae = build_vae(TINY).eval()
    with torch.no_grad():  # give the fresh VAE's latents a clear per-channel offset and spread to remove
        vae.quant_conv.bias[:4] += torch.tensor([2.0, -1.0, 0.5, 3.0])
        vae.quant_conv.weight[:4] *= torch.tensor([3.0, 1.0, 0.5, 2.0]).view(-1, 1, 1, 1)
    pixels = torch.stack([images[i]["pixel_values"] for i in range(8)])
    with torch.no_grad():
        before = vae.encode(pixels).latent_dist
        decoded_before = vae.decode(before.mean).sample
    cache = encode_dataset(vae, images, progress=False)
    mean, std = standardize_latents(vae, cache)
    with torch.no_grad():
        after = vae.encode(pixels).latent_dist
        decoded_after = vae.decode(after.mean).sample
    assert cache.mean.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    torch.testing.assert_close(cache.mean.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(decoded_after, decoded_before, atol=1e-4, rtol=1e-4)
    # The whole posterior moves: a sample decodes to what the matching old sample did.
    shift, scale = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    torch.testing.assert_close(after.mean, (before.mean - shift) / scale, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(after.std, before.std / scale, atol=1e-5, rtol=1e-3)
    # Idempotent: standardizing again leaves the weights where they are.
    weights = {k: v.clone() for k, v in vae.state_dict().items()}
    standardize_latents(vae, encode_dataset(vae, images, progress=False))
    for key, value in vae.state_dict().items():
        torch.testing.assert_close(value, weights[key], atol=1e-4, rtol=1e-4)


def test_rendering_workers_give_the_same_batches_and_latents(images, monkeypatch):
    """Next to a GPU the world renders in DataLoader workers; the data must be what a CPU build sees."""
    from animatediff.world import loops, train_vae

    def first_batches():
        batches = loops.endless_batches(images, 8, seed=3)
        return [next(batches)["pixel_values"] for _ in range(3)]

    vae = build_vae(TINY).eval()
    alone = first_batches(), encode_dataset(vae, images, batch_size=16, progress=False).mean
    for module in (loops, train_vae):
        monkeypatch.setattr(module, "rendering_workers", lambda: 2)
    with_workers = first_batches(), encode_dataset(vae, images, batch_size=16, progress=False).mean
    for a, b in zip(alone[0], with_workers[0]):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(alone[1], with_workers[1])
    assert loops.training_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
