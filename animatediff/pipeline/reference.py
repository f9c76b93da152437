"""Reference-only: a picture steers the clip's look through the UNet's own attention and feature statistics
(`models/reference_attention.py`), as animatediff-cli-prompt-travel's `controlnet_ref` does, with no model of its own.

`Reference` says what to apply; `pipe(..., reference=Reference(image))` binds it to a call (`reference_call`): the
picture fitted to the output size (covering it and cropped to the centre, as video inputs are) and encoded once, a
sample of the VAE's posterior times its scaling factor. At every prediction (each context window's, under windows)
the bound call's `around` noises that latent to the step's timestep with fresh noise for every video and frame of
the batch (`add_noise`, then `scale_model_input`), runs the UNet on it with the same text, image prompt and SDXL
ids but no ControlNet or SparseCtrl (the write pass), then makes the prediction with the hooks reading what it kept.

As prompt-travel: every row of the batch (video and frame) reads the reference noised under its own text, motion
modules running in both passes; `style_fidelity` lets the unconditional half keep part of its own look, so guidance
pushes towards the reference; `scale_pattern` weighs the frames of each call. Ours differs in three choices: the
reference noise comes from a generator of its own (seeded from the run's), so a run's other random draws are the
ones it makes without a reference; the picture keeps its aspect ratio (prompt-travel stretches it); and on the
gradual latent hires fix's smaller latents the reference latent is resized to them (prompt-travel runs the write
pass at the full size). Perturbed-attention guidance, which swaps the same self-attention layers, is refused with it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from animatediff.errors import InputError
from animatediff.io.video_input import fit_frames, read_image
from animatediff.models.reference_attention import ReferenceBank, reference_hooks
from animatediff.pipeline.controlnet import control_frames_tensor
from animatediff.pipeline.video_start import encode_video
from animatediff.sampling import Predictor
from animatediff.sampling.gradual_latent import resized

if TYPE_CHECKING:
    from animatediff.pipeline.animation import AnimationPipeline


@dataclass
class Reference:
    """A reference picture and how it steers (prompt-travel's `controlnet_ref` keys in brackets)."""

    image: object
    """A path, a PIL image, an (H, W, 3) array or a (3, H, W) tensor (uint8, or floats in [0, 1]) (`ref_image`)."""
    attention: bool = True
    """Self-attention reads the reference (`reference_attn`)."""
    adain: bool = False
    """Feature statistics are matched to the reference's (`reference_adain`)."""
    attention_weight: float = 1.0
    """Which self-attention layers read: block i of N when this > i/N, 1 all, 0 none
    (`attention_auto_machine_weight`)."""
    adain_weight: float = 1.0
    """Which blocks AdaIN acts in: those whose weight (0 … 2) is at most this (`gn_auto_machine_weight`)."""
    style_fidelity: float = 0.5
    """0 … 1: how much of its own look the unconditional half keeps (`style_fidelity`)."""
    scale_pattern: Sequence[float] = (1.0,)
    """How strongly each frame of a call takes the reference, repeated over its frames (`scale_pattern`)."""

    def __post_init__(self) -> None:
        if not isinstance(self.attention, bool) or not isinstance(self.adain, bool):
            given = f"{self.attention!r}, {self.adain!r}"
            raise InputError(f"reference attention and adain must be true or false, got {given}")
        if not (self.attention or self.adain):
            raise InputError("reference: switch on attention, adain or both")
        for name in ("attention_weight", "adain_weight", "style_fidelity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"reference {name} must be a number, got {value!r}")
        if not 0 <= self.style_fidelity <= 1:
            raise InputError(f"reference style_fidelity must be in [0, 1], got {self.style_fidelity}")
        pattern = self.scale_pattern
        if isinstance(pattern, (int, float)) and not isinstance(pattern, bool):
            pattern = [pattern]
        if (
            not isinstance(pattern, Sequence)
            or not pattern
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in pattern)
        ):
            raise InputError(f"reference scale_pattern must be a list of numbers, got {self.scale_pattern!r}")
        self.scale_pattern = tuple(float(s) for s in pattern)
        self.image = reference_image(self.image)


def reference_image(image: object) -> np.ndarray:
    """The picture as float32 (H, W, 3) in [0, 1]; a path is read (one line when it is missing or no image)."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, "reference image")
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim == 3:
        try:
            return control_frames_tensor(image[None])[0].permute(1, 2, 0).numpy()
        except InputError as err:
            raise InputError(f"reference image: {str(err).removeprefix('control frames')}") from None
    shape = getattr(image, "shape", None)
    raise InputError(f"reference image must be a path, a PIL image or one picture, got {shape or type(image).__name__}")


class ReferenceCall:
    """A `Reference` bound to one call of a pipeline: its latent, its noise generator, its hooks' bank."""

    def __init__(
        self, pipe: AnimationPipeline, reference: Reference, latent: torch.Tensor, generator: torch.Generator,
        guided: bool,
    ) -> None:  # fmt: skip
        """`latent` (1, c, 1, h, w): the encoded picture; `guided`: the batch holds [uncond, cond] videos."""
        self.unet = pipe.unet
        self.scheduler = pipe.scheduler
        self.reference = reference
        self.latent = latent
        self.generator = generator
        self.bank = ReferenceBank(reference.style_fidelity, reference.scale_pattern)
        self.guided = guided

    def around(self, predict: Predictor, write: Predictor) -> Predictor:
        """`predict` with the reference read at every call, after `write` (the same UNet without the ControlNets
        and SparseCtrls) has run on the reference noised to that call's timestep."""
        ref, bank = self.reference, self.bank
        attention = ref.attention_weight if ref.attention else None
        adain = ref.adain_weight if ref.adain else None

        def predict_referenced(
            x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor
        ) -> torch.Tensor:
            latent = resized(self.latent, tuple(x.shape[-2:])).to(x.device, x.dtype).expand_as(x)
            noise = torch.randn(x.shape, generator=self.generator, dtype=torch.float32).to(x.device, x.dtype)
            noisy = self.scheduler.add_noise(latent, noise, t.reshape(1))
            noisy = self.scheduler.scale_model_input(noisy, t)
            bank.num_frames = x.shape[2]
            with reference_hooks(self.unet, bank, attention, adain):
                bank.mode, bank.guided = "write", False
                write(noisy, t, text, frames)
                bank.mode, bank.guided = "read", self.guided
                try:
                    return predict(x, t, text, frames)
                finally:
                    bank.mode = None

        return predict_referenced


@torch.no_grad()
def reference_call(
    pipe: AnimationPipeline,
    reference: Reference | None,
    height: int,
    width: int,
    generator: torch.Generator,
    guided: bool,
    chunk_size: int = 16,
) -> ReferenceCall | None:
    """`reference` bound to a call drawing height × width (module docstring); None without one. `generator`: the
    run's, whose seed seeds the reference's own (the encoding's sample and the noise)."""
    if reference is None:
        return None
    if not isinstance(reference, Reference):
        raise InputError(f"reference must be an animatediff.pipeline.reference.Reference, got {reference!r}")
    own = torch.Generator("cpu").manual_seed(generator.initial_seed() + 1)
    picture = fit_frames(reference.image[None], height, width)
    latent = encode_video(pipe.vae, picture, 1, own, chunk_size, pipe.device, pipe.dtype)  # (1, 1, c, h, w)
    return ReferenceCall(pipe, reference, latent.transpose(1, 2), own, guided)


def check_reference(reference: Reference | None, pag: object) -> None:
    """One line for what cannot run with a reference."""
    if reference is not None and pag is not None:
        raise InputError("reference and perturbed-attention guidance both change self-attention; use one of them")


ENTRY_KEYS = ("image", "attention", "adain", "attention_weight", "adain_weight", "style_fidelity", "scale_pattern")
"""A run entry's `reference` mapping: `Reference`'s fields, the image a path."""


def check_reference_keys(values: dict, where: str) -> None:
    """A run entry's `reference` checked, in one line, before any model loads (its image is looked for later)."""
    given = values.get("reference")
    if given is None:
        return
    if not isinstance(given, dict) or not isinstance(given.get("image"), str) or not given["image"]:
        raise InputError(f"{where}: reference must be a mapping with image, a path, got {given!r}")
    unknown = sorted(set(given) - set(ENTRY_KEYS))
    if unknown:
        raise InputError(f"{where}: reference {unknown[0]!r} is not read here ({', '.join(ENTRY_KEYS)})")
    try:
        Reference(np.zeros((1, 1, 3), dtype=np.float32), **{k: v for k, v in given.items() if k != "image"})
    except InputError as err:
        raise InputError(f"{where}: {err}") from None


def entry_reference(given: dict | None, resolve: Callable[[str], str] = str) -> Reference | None:
    """The `Reference` a checked entry's `reference` mapping asks for, its image found by `resolve`; None without."""
    if given is None:
        return None
    return Reference(resolve(given["image"]), **{k: v for k, v in given.items() if k != "image"})
