"""Which look a generated frame has: a small classifier of shape and texture, trained on rendered images.

The personalized models teach looks the base lacks (a star, an outlined style); whether a generated frame keeps
that look is a question of shape and texture that no single pixel statistic answers robustly at 32×32, so the
evaluation asks a small convolutional network trained here on the world's own renderings: every shape and
texture, still and mid-motion (with trails), lightly blurred and noised so that it reads generated frames, which
are never as crisp as renderings. Its accuracy on fresh renderings is measured and kept with its weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from animatediff.world.datasets import WorldImages
from animatediff.world.scenes import FULL_WORLD, NEW_SHAPES, SHAPES, TEXTURES, WorldConfig

SHAPE_NAMES = SHAPES + NEW_SHAPES
TEXTURE_NAMES = TEXTURES


@dataclass(frozen=True)
class LookConfig:
    """How the look classifier is trained."""

    images: int = 8000
    """Rendered training images (all shapes and textures of the full world)."""
    steps: int = 1200
    """Optimizer steps."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 2e-3
    """AdamW learning rate."""
    resolution: int = 32
    """Image side in pixels (the world's)."""
    blur: float = 0.7
    """Largest Gaussian blur sigma (pixels) of the augmentation; each image draws one in [0, blur]."""
    noise: float = 0.05
    """Largest per-pixel noise std of the augmentation, in [0, 1] units."""
    seed: int = 0
    """Seeds the renderings, the augmentation and the initial weights."""
    progress: bool = True
    """Show a tqdm bar."""


class LookClassifier(nn.Module):
    """Frames (n, 3, H, W) in [0, 1] → shape logits (n, 5) and texture logits (n, 3)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.SiLU(),
        )
        self.shape = nn.Linear(2 * width, len(SHAPE_NAMES))
        self.texture = nn.Linear(2 * width, len(TEXTURE_NAMES))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x * 2 - 1).amax(dim=(2, 3))  # max-pool: the object is small and anywhere in the frame
        return self.shape(h), self.texture(h)

    @torch.no_grad()
    def predict(self, frames: np.ndarray) -> tuple[list[str], list[str]]:
        """Frames (n, H, W, 3) in [0, 1] → (shape names, texture names), one per frame."""
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2)
        shape, texture = self(x)
        return [SHAPE_NAMES[i] for i in shape.argmax(1)], [TEXTURE_NAMES[i] for i in texture.argmax(1)]


def _rendered(
    count: int, seed: int, resolution: int, world: WorldConfig = FULL_WORLD
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (n, 3, H, W) in [0, 1], shape labels, texture labels) of `world`, half of them mid-motion."""
    ds = WorldImages(count, seed, world, resolution, split="all", moving=0.5)
    images, shapes, textures = [], [], []
    for i in range(count):
        r = ds.rendering(i)
        images.append(torch.from_numpy(r.image).permute(2, 0, 1).float() / 255)
        shapes.append(SHAPE_NAMES.index(r.spec.shape))
        textures.append(TEXTURE_NAMES.index(r.spec.texture))
    return torch.stack(images), torch.tensor(shapes), torch.tensor(textures)


def _augment(x: torch.Tensor, cfg: LookConfig, generator: torch.Generator) -> torch.Tensor:
    """Blur each image by its own sigma (separable Gaussian) and add noise, as generated frames look."""
    n = x.shape[0]
    sigma = torch.rand(n, generator=generator) * cfg.blur + 1e-3
    taps = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (n, 5)
    c = x.shape[1]
    weight = kernel.repeat_interleave(c, 0)  # (n·c, 5)
    flat = x.reshape(1, n * c, *x.shape[2:])
    flat = F.conv2d(F.pad(flat, (2, 2, 0, 0), mode="replicate"), weight[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, 2, 2), mode="replicate"), weight[:, None, :, None], groups=n * c)
    noise = torch.randn(x.shape, generator=generator) * (torch.rand(n, 1, 1, 1, generator=generator) * cfg.noise)
    return (flat.reshape(x.shape) + noise).clamp(0, 1)


def train_look_classifier(
    cfg: LookConfig = LookConfig(), world: WorldConfig = FULL_WORLD
) -> tuple[LookClassifier, dict[str, float]]:
    """Train on fresh renderings of `world` (every shape and texture; drawn as the base's world is); returns the
    classifier (eval mode) and its figures: accuracy on other renderings, and the mean loss of the first and last
    tenth of the steps."""
    torch.manual_seed(cfg.seed)
    model = LookClassifier()
    images, shapes, textures = _rendered(cfg.images, cfg.seed, cfg.resolution, world)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(cfg.seed)
    bar = tqdm(range(cfg.steps), desc="look classifier", disable=not cfg.progress)
    losses = []
    for step in bar:
        index = torch.randint(0, cfg.images, (cfg.batch_size,), generator=generator)
        shape_logits, texture_logits = model(_augment(images[index], cfg, generator))
        loss = F.cross_entropy(shape_logits, shapes[index]) + F.cross_entropy(texture_logits, textures[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:  # cosine decay: the last steps settle
            group["lr"] = cfg.lr * 0.5 * (1 + np.cos(np.pi * (step + 1) / cfg.steps))
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    tenth = max(1, cfg.steps // 10)
    figures = {"first_loss": float(np.mean(losses[:tenth])), "final_loss": float(np.mean(losses[-tenth:]))}
    return model, {**look_accuracy(model, cfg, world=world), **figures}


def look_accuracy(
    model: LookClassifier, cfg: LookConfig = LookConfig(), count: int = 1000, world: WorldConfig = FULL_WORLD
) -> dict[str, float]:
    """Shape and texture accuracy on renderings of `world` the classifier never saw (another seed), augmented
    alike."""
    images, shapes, textures = _rendered(count, cfg.seed + 7919, cfg.resolution, world)
    x = _augment(images, cfg, torch.Generator().manual_seed(cfg.seed + 1))
    with torch.no_grad():
        shape_logits, texture_logits = model(x)
    return {
        "shape_accuracy": float((shape_logits.argmax(1) == shapes).float().mean()),
        "texture_accuracy": float((texture_logits.argmax(1) == textures).float().mean()),
    }


def save_look_classifier(model: LookClassifier, path: str | os.PathLike, figures: dict | None = None) -> Path:
    """safetensors, written atomically; `figures` (its accuracy, config) go in the file's metadata."""
    from animatediff.formats.state_dicts import write_state_dict

    metadata = {k: str(v) for k, v in (figures or {}).items()}
    return write_state_dict(path, model.state_dict(), metadata=metadata)


def look_figures(path: str | os.PathLike) -> dict[str, float]:
    """The figures saved with a classifier (accuracy, losses, minutes)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: float(v) for k, v in (f.metadata() or {}).items()}


def load_look_classifier(path: str | os.PathLike) -> LookClassifier:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no look classifier at {path}; `animatediff world build` trains one")
    model = LookClassifier()
    model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})  # shipped in fp16
    return model.eval()
