"""The image half of the world's recipe: train the VAE, then the UNet on its latents, and save an SD1.x folder.

Plain torch loops, as in latent diffusion (Rombach et al. 2022): the VAE learns reconstruction with a tiny KL
term; its latents are scaled to unit variance (SD's 0.18215 was found the same way); the UNet learns epsilon
prediction on AnimateDiff's linear betas — the schedule the project samples with — with 10% of captions dropped
so classifier-free guidance works.

The text encoder trains jointly with the UNet (SD's CLIP comes pretrained; ours has to learn here). A random
frozen encoder was tried first: colour, shape and background came out right, but the UNet learned to look past
the motion words, so nothing the motion module sees said which way to move. Trained jointly, the encoder puts the
motion words where the UNet reads them, and the images of moving objects (with their trails) give it a reason
to. Words the base never sees in captions (the personalization looks: "star", "outlined") keep their random
embeddings, which DreamBooth and LoRA learn to read with the encoder frozen again.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from animatediff.sampling import denoising_target
from animatediff.text_encoding import encode_prompts
from animatediff.world.base_model import (
    BaseModelConfig,
    build_text_encoder,
    build_unet,
    build_vae,
    official_scheduler,
    save_base_folder,
)
from animatediff.world.datasets import WorldImages
from animatediff.world.scenes import BASE_WORLD, FULL_WORLD
from animatediff.world.tokenizer import world_tokenizer


@dataclass(frozen=True)
class VaeTrainConfig:
    """How the VAE is trained."""

    steps: int = 1000
    """Optimizer steps."""
    batch_size: int = 32
    """Images per step."""
    lr: float = 1e-3
    """AdamW learning rate (constant after the warmup)."""
    warmup_steps: int = 50
    """Steps of linear learning-rate warmup."""
    kl_weight: float = 1e-6
    """Weight of the KL term (per latent element) against the per-pixel reconstruction loss."""
    sharpen_steps: int = 500
    """Steps after the MSE phase with an L1 loss and the learning rate decaying to zero (cosine). MSE alone
    leaves the small, faint parts (thin outlines, motion trails, the arms of a cross) blurred away, as they
    weigh little in a mean square; L1 pushes every pixel's error equally."""
    object_weight: float = 10.0
    """How much more a pixel of the object (and of its trail, and a pixel around them) counts in the
    reconstruction loss than one of the plain background (`foreground_weights`). At 1 every pixel counts the same,
    and the object, a tenth of the image, is what the VAE learns last: the third build's VAE, trained so, gave back
    a blob for a square or a cross. Both phases use it."""
    seed: int = 0
    """Seeds the batch order and the posterior samples."""
    progress: bool = True
    """Show a tqdm bar."""


@dataclass(frozen=True)
class UnetTrainConfig:
    """How the UNet (and optionally the text encoder) is trained on VAE latents."""

    steps: int = 8000
    """Optimizer steps."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 5e-4
    """AdamW learning rate (constant after the warmup)."""
    warmup_steps: int = 50
    """Steps of linear learning-rate warmup."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    caption_dropout: float = 0.1
    """Probability that a caption is replaced by "" (for classifier-free guidance)."""
    ema_decay: float | None = 0.999
    """Decay of the weight average that gets saved; None saves the raw weights."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    train_text_encoder: bool = True
    """Train the text encoder jointly; False keeps it random and frozen (each caption then encodes once)."""
    zero_terminal_snr: bool = True
    """Train for v-prediction on the linear betas rescaled to zero terminal SNR (`official_scheduler`): no clip or
    image leaks into the last timestep, so what a sample starts from is decided by the caption, not read from the
    noise. The base's scheduler config records it, and sampling and the motion stage follow it."""
    seed: int = 0
    """Seeds the batch order, timesteps, noise and caption dropout."""
    progress: bool = True
    """Show a tqdm bar."""


@dataclass
class TrainLog:
    """Per-step losses and wall time of one training stage."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def mean(self, last: int = 50) -> float:
        tail = self.losses[-last:]
        return sum(tail) / len(tail) if tail else math.nan


def training_device() -> torch.device:
    """Where the world's image stages train: the GPU when there is one (minutes), else the CPU. Random draws stay
    on CPU generators either way, so a seed means the same data order, noise and timesteps on both."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def rendering_workers() -> int:
    """DataLoader workers that render the world's images and clips. Next to a GPU, several, as rendering on one
    core would leave the GPU waiting. On a CPU, one where a core is left beyond torch's threads, to render the next
    batch while torch trains on this one; else none: on 2 cores, a worker beside torch's 2 threads made a
    motion-stage step 6 % slower in one run and 15 % faster in another. Items are rendered from their index, so
    the data, and the weights, are the same either way."""
    cores = os.cpu_count() or 1
    if torch.cuda.is_available():
        return min(8, max(0, cores - 2))
    return 1 if cores > torch.get_num_threads() else 0


def _optimizer(
    params, lr: float, warmup_steps: int, weight_decay: float = 0.0, cosine_steps: int | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a linear warmup, then constant, or with `cosine_steps` a cosine decay to zero over that many."""
    opt = torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay)

    # A linear warmup keeps the first Adam steps (poor second-moment estimates) from kicking tiny nets.
    def factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / max(1, warmup_steps))
        return warmup if cosine_steps is None else warmup * 0.5 * (1 + math.cos(math.pi * step / cosine_steps))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _batches(dataset: Dataset, batch_size: int, seed: int):
    """Endless shuffled batches, reshuffled each epoch from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            generator=generator,
            drop_last=True,
            num_workers=rendering_workers(),
        )
        if len(loader) == 0:
            raise ValueError(f"dataset of {len(dataset)} items is smaller than one batch of {batch_size}")
        yield from loader


def foreground_weights(pixels: torch.Tensor, object_weight: float, threshold: float = 0.1) -> torch.Tensor:
    """Per-pixel loss weights (b, 1, H, W) for world images (b, 3, H, W) in [-1, 1]: `object_weight` where a pixel
    differs from the image's background by more than `threshold` in some channel, or borders such a pixel, else 1.
    The world's backgrounds are plain, so the median of an image's border pixels is its background colour."""
    border = torch.cat([pixels[:, :, 0], pixels[:, :, -1], pixels[:, :, :, 0], pixels[:, :, :, -1]], dim=2)
    background = border.median(dim=2).values[:, :, None, None]
    mask = ((pixels - background).abs().amax(dim=1, keepdim=True) > threshold).float()
    mask = F.max_pool2d(mask, 3, stride=1, padding=1)  # the edge pixels, where a shape is told from a blob
    return 1 + (object_weight - 1) * mask


def reconstruction_loss(
    recon: torch.Tensor, pixels: torch.Tensor, l1: bool = False, object_weight: float = 1.0
) -> torch.Tensor:
    """MSE (or L1 with `l1`) of a reconstruction, each pixel weighted by `foreground_weights` unless
    `object_weight` is 1; the weights are normalized to mean 1, so the loss keeps its scale."""
    if object_weight == 1.0:
        return F.l1_loss(recon, pixels) if l1 else F.mse_loss(recon, pixels)
    weights = foreground_weights(pixels, object_weight)
    error = (recon - pixels).abs() if l1 else (recon - pixels) ** 2
    return (weights * error).mean() / weights.mean()


def vae_loss(
    vae: AutoencoderKL,
    pixels: torch.Tensor,
    kl_weight: float,
    generator: torch.Generator | None = None,
    l1: bool = False,
    object_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, plain reconstruction MSE) for pixels (b, 3, H, W) in [-1, 1], decoding a posterior sample;
    the loss reconstructs by `reconstruction_loss`."""
    posterior = vae.encode(pixels.to(vae.device)).latent_dist
    recon = vae.decode(posterior.sample(generator)).sample
    pixels = pixels.to(recon.device)
    mse = F.mse_loss(recon, pixels)
    reconstruction = reconstruction_loss(recon, pixels, l1, object_weight)
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    return reconstruction + kl_weight * kl, mse


@torch.no_grad()
def reconstruction_mse(vae: AutoencoderKL, pixels: torch.Tensor) -> float:
    """Reconstruction MSE through the posterior mean (deterministic), pixels in [-1, 1]."""
    pixels = pixels.to(vae.device)
    recon = vae.decode(vae.encode(pixels).latent_dist.mean).sample
    return F.mse_loss(recon, pixels).item()


def train_vae(vae: AutoencoderKL, dataset: Dataset, cfg: VaeTrainConfig = VaeTrainConfig()) -> TrainLog:
    """Train `vae` in place on `dataset`'s images: the MSE phase, then the L1 sharpening phase."""
    log = _vae_phase(vae, dataset, cfg, cfg.steps, l1=False)
    sharpened = sharpen_vae(vae, dataset, cfg)
    return TrainLog(log.losses + sharpened.losses, log.seconds + sharpened.seconds)


def sharpen_vae(vae: AutoencoderKL, dataset: Dataset, cfg: VaeTrainConfig = VaeTrainConfig()) -> TrainLog:
    """The L1 phase alone (its own seeds), so a VAE saved after the MSE phase can be finished later."""
    return _vae_phase(vae, dataset, cfg, cfg.sharpen_steps, l1=True)


def _vae_phase(vae: AutoencoderKL, dataset: Dataset, cfg: VaeTrainConfig, steps: int, l1: bool) -> TrainLog:
    log = TrainLog()
    if steps <= 0:
        return log
    vae.train().requires_grad_(True)
    # The L1 phase decays to zero: its last steps polish instead of jumping around the optimum.
    opt, schedule = _optimizer(vae.parameters(), cfg.lr, cfg.warmup_steps, cosine_steps=steps if l1 else None)
    seed = cfg.seed + (1 if l1 else 0)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    batches = _batches(dataset, cfg.batch_size, seed)
    for _ in (bar := tqdm(range(steps), desc="VAE (L1)" if l1 else "VAE", disable=not cfg.progress)):
        loss, mse = vae_loss(vae, next(batches)["pixel_values"], cfg.kl_weight, generator, l1, cfg.object_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        log.losses.append(mse.item())
        bar.set_postfix(mse=f"{mse.item():.4f}")
    log.seconds = time.perf_counter() - start
    vae.eval().requires_grad_(False)
    return log


@dataclass
class LatentCache:
    """Every dataset image's posterior (mean, std), encoded once, with its caption."""

    mean: torch.Tensor
    std: torch.Tensor
    captions: list[str]

    def sample(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean, std = self.mean[index], self.std[index]
        return mean + std * torch.randn(mean.shape, generator=generator)


@torch.no_grad()
def encode_dataset(vae: AutoencoderKL, dataset: Dataset, batch_size: int = 128, progress: bool = True) -> LatentCache:
    """Encode all images once: the UNet then trains for many epochs without touching the VAE encoder. The cache
    lives on the CPU, where its samples are drawn."""
    means, stds, captions = [], [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=rendering_workers())
    for batch in tqdm(loader, desc="encode", disable=not progress):
        posterior = vae.encode(batch["pixel_values"].to(vae.device)).latent_dist
        means.append(posterior.mean.cpu())
        stds.append(posterior.std.cpu())
        captions += batch["text"]
    return LatentCache(torch.cat(means), torch.cat(stds), captions)


def set_scaling_factor(vae: AutoencoderKL, cache: LatentCache, seed: int = 0) -> float:
    """Set `vae.config.scaling_factor` to 1 / std of the latents, so the UNet sees unit-variance latents."""
    latents = cache.sample(torch.arange(len(cache.captions)), torch.Generator().manual_seed(seed))
    factor = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=factor)
    return factor


@torch.no_grad()
def standardize_latents(vae: AutoencoderKL, cache: LatentCache) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the VAE's latents zero-mean with unit spread per channel, exactly, by folding the shift and scale into
    its 1×1 `quant_conv` (encoder side) and `post_quant_conv` (decoder side); `cache` is rewritten to match.

    Why: the world's latents came out with per-channel means of 1–2 standard deviations. AnimateDiff's linear
    schedule keeps √ᾱ_T ≈ 0.04 of the signal at the last step, so a UNet trained on such latents reads the
    leftover mean in x_T, while sampling starts from zero-mean noise: the first build at 16×16 latents sampled
    colour noise. The folded form keeps the VAE a plain SD `AutoencoderKL` (SD1.x pipelines apply no latent
    shift). Returns the (mean, std) per channel that were removed."""
    c = vae.config.latent_channels
    mean, std = cache.mean.mean(dim=(0, 2, 3)), cache.mean.std(dim=(0, 2, 3)).clamp_min(1e-6)
    quant, post = vae.quant_conv, vae.post_quant_conv
    on_vae = {"device": quant.weight.device, "dtype": quant.weight.dtype}
    shift, scale = mean.to(**on_vae), std.to(**on_vae)
    # Encoder: the moments' mean half becomes (m − mean)/std, its log-variance half shifts by −2·log(std).
    quant.weight[:c] /= scale.view(-1, 1, 1, 1)
    quant.bias[:c] = (quant.bias[:c] - shift) / scale
    quant.bias[c:] -= 2 * scale.log()
    # Decoder: it receives std·z + mean, so W·(std·z + mean) + b = (W·std)·z + (W·mean + b).
    post.bias += post.weight[:, :, 0, 0] @ shift
    post.weight *= scale.view(1, -1, 1, 1)
    cache.mean = (cache.mean - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    cache.std = cache.std / std.view(1, -1, 1, 1)
    return mean, std


class CaptionEmbeddings:
    """Text-encoder outputs per caption; with a frozen encoder each distinct caption is encoded once."""

    def __init__(self, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, cache: bool = True) -> None:
        self.tokenizer, self.text_encoder, self.cache = tokenizer, text_encoder, cache
        self._memo: dict[str, torch.Tensor] = {}

    def _encode(self, captions: list[str]) -> torch.Tensor:
        return encode_prompts(self.tokenizer, self.text_encoder, captions)

    def __call__(self, captions: list[str]) -> torch.Tensor:
        """(len(captions), 77, D)."""
        if not self.cache:
            return self._encode(captions)
        new = sorted({c for c in captions if c not in self._memo})
        if new:
            with torch.no_grad():
                for caption, embedding in zip(new, self._encode(new)):
                    self._memo[caption] = embedding
        return torch.stack([self._memo[c] for c in captions])


def unet_loss(
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    text: torch.Tensor,
    generator: torch.Generator,
    timesteps: torch.Tensor | None = None,
    scheduler: SchedulerMixin | None = None,
) -> torch.Tensor:
    """The denoising MSE on `scheduler`'s noise schedule (AnimateDiff's linear betas by default) against its
    prediction type's target (ε, or v); latents already scaled. Timesteps and noise are drawn on the CPU
    `generator`, and everything then moves to the UNet's device."""
    scheduler = scheduler or official_scheduler()
    if timesteps is None:
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    latents, noise, timesteps, text = (x.to(unet.device) for x in (latents, noise, timesteps, text))
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = denoising_target(scheduler, latents, noise, timesteps)
    return F.mse_loss(unet(noisy, timesteps, text).sample, target)


def train_unet(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    latents: LatentCache,
    scaling_factor: float,
    cfg: UnetTrainConfig = UnetTrainConfig(),
) -> TrainLog:
    """Train `unet` in place on cached latents; with `cfg.ema_decay` it ends holding the averaged weights."""
    trainable = list(unet.parameters())
    unet.train().requires_grad_(True)
    text_encoder.requires_grad_(cfg.train_text_encoder).train(cfg.train_text_encoder)
    if cfg.train_text_encoder:
        trainable += list(text_encoder.parameters())
    embed = CaptionEmbeddings(tokenizer, text_encoder, cache=not cfg.train_text_encoder)
    opt, warmup = _optimizer(trainable, cfg.lr, cfg.warmup_steps, cfg.weight_decay)
    ema = EMAModel(trainable, decay=cfg.ema_decay) if cfg.ema_decay else None
    generator = torch.Generator().manual_seed(cfg.seed)
    n = len(latents.captions)
    if n < cfg.batch_size:
        raise ValueError(f"{n} cached images are fewer than one batch of {cfg.batch_size}")
    scheduler = official_scheduler(cfg.zero_terminal_snr)
    log, start = TrainLog(), time.perf_counter()
    for _ in (bar := tqdm(range(cfg.steps), desc="UNet", disable=not cfg.progress)):
        index = torch.randint(0, n, (cfg.batch_size,), generator=generator)
        x = latents.sample(index, generator) * scaling_factor
        drop = torch.rand(cfg.batch_size, generator=generator) < cfg.caption_dropout
        captions = ["" if d else latents.captions[i] for d, i in zip(drop.tolist(), index.tolist())]
        loss = unet_loss(unet, x, embed(captions), generator, scheduler=scheduler)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        opt.step()
        warmup.step()
        if ema is not None:
            ema.step(trainable)
        log.losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}")
    if ema is not None:
        ema.copy_to(trainable)
    log.seconds = time.perf_counter() - start
    unet.eval().requires_grad_(False)
    text_encoder.eval().requires_grad_(False)
    return log


@torch.no_grad()
def fixed_unet_loss(
    unet: UNet2DConditionModel,
    text: torch.Tensor,
    latents: torch.Tensor,
    seed: int = 0,
    repeats: int = 4,
    scheduler: SchedulerMixin | None = None,
) -> float:
    """The UNet loss on fixed latents, timesteps and noise: comparable before and after training."""
    generator = torch.Generator().manual_seed(seed)
    timesteps = torch.linspace(0, 999, latents.shape[0] * repeats).long()
    x = latents.repeat(repeats, 1, 1, 1)
    return unet_loss(unet, x, text.repeat(repeats, 1, 1), generator, timesteps, scheduler).item()


@dataclass(frozen=True)
class ImageRecipe:
    """Everything that decides the world's base model: data, sizes, and both training stages."""

    model: BaseModelConfig = BaseModelConfig()
    """Component sizes."""
    vae: VaeTrainConfig = VaeTrainConfig()
    """VAE stage."""
    unet: UnetTrainConfig = UnetTrainConfig()
    """UNet stage."""
    num_images: int = 20_000
    """Distinct training images (rendered on the fly; the UNet stage caches their latents)."""
    data_seed: int = 0
    """Seed of the image dataset."""
    model_seed: int = 0
    """Seed of the initial weights (and so of the frozen text encoder)."""
    vae_world: str = "full"
    """Images the VAE learns to reconstruct: 'base' (the base UNet's own images) or 'full' (every shape and
    texture, stars and outlines included, as SD's VAE learned from a broader set than any fine-tune shows it: a
    personalized look can only appear if the shared decoder can draw it)."""
    growth_core: bool = False
    """Draw growing objects with a darker core (`WorldConfig.growth_core`), so that an image shows the growth; off,
    a growing object's image is a still one's. Recorded in world.json, and every stage over the base draws its
    world the same way (`base_world`)."""
    standardize_latents: bool = True
    """Fold a per-channel shift and scale into the VAE so its latents are zero-mean, unit-spread per channel
    (`standardize_latents`) before the UNet trains, so sampling from unit noise starts where training ended."""

    def __post_init__(self) -> None:
        if self.vae_world not in ("base", "full"):
            raise ValueError(f"vae_world is 'base' or 'full', got {self.vae_world!r}")


def build_base_model(folder: str | os.PathLike, recipe: ImageRecipe = ImageRecipe()) -> Path:
    """Tokenizer → VAE → latents → UNet, written as an SD1.5-layout folder with the recipe in world.json.

    A folder that already holds a trained vae/ keeps it (only the UNet stage reruns), so the stages can be
    run one after the other.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = recipe.model
    device = training_device()
    tokenizer = world_tokenizer(folder / "tokenizer")
    text_encoder = build_text_encoder(tokenizer, cfg, recipe.model_seed).eval().requires_grad_(False).to(device)
    world = replace(BASE_WORLD, growth_core=recipe.growth_core)
    dataset = WorldImages(recipe.num_images, recipe.data_seed, world, cfg.resolution, split="train")
    vae_images = dataset
    if recipe.vae_world == "full":
        full = replace(FULL_WORLD, growth_core=recipe.growth_core)
        vae_images = WorldImages(recipe.num_images, recipe.data_seed, full, cfg.resolution, split="train")
    report: dict = {"recipe": asdict(recipe)}

    if (folder / "vae" / "config.json").is_file():
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True).eval().to(device)
        if tuple(vae.config.block_out_channels) != tuple(cfg.vae_channels):
            raise ValueError(
                f"{folder / 'vae'} has channels {tuple(vae.config.block_out_channels)}, the recipe asks for "
                f"{tuple(cfg.vae_channels)}; remove that vae/ folder to train a new VAE"
            )
        previous = folder / "world.json"
        earlier = json.loads(previous.read_text()).get("vae", {}) if previous.is_file() else {}
        report["vae"] = {**earlier, "reused": True}
    else:
        vae = build_vae(cfg, recipe.model_seed).to(device)
        vae_log = train_vae(vae, vae_images, recipe.vae)
        report["vae"] = {"final_mse": vae_log.mean(), "seconds": vae_log.seconds}
        vae.save_pretrained(folder / "vae")
    vae.requires_grad_(False)

    cache = encode_dataset(vae, dataset, progress=recipe.vae.progress)
    if recipe.standardize_latents:
        standardize_latents(vae, cache)  # idempotent: a reused, already standardized VAE comes out the same
        vae.save_pretrained(folder / "vae")
    factor = set_scaling_factor(vae, cache, recipe.data_seed)
    unet = build_unet(cfg, recipe.model_seed).to(device)
    unet_log = train_unet(unet, text_encoder, tokenizer, cache, factor, recipe.unet)
    report["unet"] = {"final_loss": unet_log.mean(), "seconds": unet_log.seconds, "scaling_factor": factor}

    text_encoder, vae, unet = text_encoder.cpu(), vae.cpu(), unet.cpu()
    save_base_folder(folder, tokenizer, text_encoder, vae, unet, official_scheduler(recipe.unet.zero_terminal_snr))
    (folder / "world.json").write_text(json.dumps(report, indent=2, default=_jsonable))
    return folder


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
