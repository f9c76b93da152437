"""Perturbed-attention guidance (PAG, Ahn et al. 2024), as diffusers' `AnimateDiffPAGPipeline` gives it.

Each step also predicts the noise with the self-attention of some layers made the identity (each token, or each
frame in a motion module, attends to itself alone: its value, projected), and the guidance pushes away from that
prediction: ε = ε_u + s·(ε_c − ε_u) + p·(ε_c − ε_p) (`sampling.guidance.guided`), p = `scale`, or with
`adaptive_scale` a, max(p − a·(1000 − t), 0).

`layers` are patterns (regular expressions) matched against the self-attention layers' names in diffusers'
`UNetMotionModel`, as its `pag_applied_layers`: the image layers' `down_blocks.1.attentions.0.transformer_blocks.0
.attn1`, the motion modules' `mid_block.motion_modules.0.transformer_blocks.0.attn1` (and `attn2`, their second
temporal self-attention). The default, "mid_block.*attn1", is diffusers' AnimateDiff default: the middle block's
image self-attention and its motion module's first temporal attention.

The perturbed prediction is the conditional one, made in a call of its own beside the guided batch. With
conditions that read the guided batch as [unconditional, conditional] halves (ControlNets, SparseCtrl, an IP-Adapter)
that call is a whole guided batch whose conditional half is kept, so that every condition sees the layout it was
made for (one more unconditional pass: 4 UNet passes a step instead of 3).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention

from animatediff.errors import InputError
from animatediff.formats.motion_module_files import OFFICIAL_TO_DIFFUSERS
from animatediff.models.motion_module import TemporalSelfAttention
from animatediff.sampling.loop import Predictor

DEFAULT_LAYERS = ("mid_block.*attn1",)


@dataclass(frozen=True)
class PAG:
    """Perturbed-attention guidance settings (diffusers' `pag_scale`, `pag_adaptive_scale`, `pag_applied_layers`)."""

    scale: float = 3.0
    """p: how far the guidance pushes away from the perturbed prediction; 0 turns PAG off."""
    adaptive_scale: float = 0.0
    """a: p lowered by a·(1000 − t) as the steps go on, down to 0."""
    layers: tuple[str, ...] = DEFAULT_LAYERS
    """Which self-attention layers are perturbed: patterns over diffusers' UNetMotionModel names."""

    def __post_init__(self) -> None:
        for name, value in (("PAG scale", self.scale), ("PAG adaptive scale", self.adaptive_scale)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InputError(f"{name} must be a number from 0 up, got {value!r}")
        if isinstance(self.layers, str) or not self.layers or not all(isinstance(p, str) for p in self.layers):
            raise InputError(f"PAG layers must be one or more name patterns, got {self.layers!r}")
        for pattern in self.layers:
            try:
                re.compile(pattern)
            except re.error as err:
                raise InputError(f"PAG layer pattern {pattern!r} is not a regular expression ({err})") from None

    def scale_at(self, t: torch.Tensor) -> float:
        """p at timestep `t`."""
        if self.adaptive_scale == 0:
            return float(self.scale)
        return max(float(self.scale) - float(self.adaptive_scale) * (1000 - float(t)), 0.0)


def self_attention_layers(unet: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """An inflated UNet's self-attention layers by their names in diffusers' UNetMotionModel: the image UNet's
    (`Attention`, not cross-attention) and the motion modules' (official names renamed as diffusers' MotionAdapter
    names them)."""
    layers = {
        name: module
        for name, module in unet.unet.named_modules()
        if isinstance(module, Attention) and not module.is_cross_attention
    }
    for name, module in unet.motion_modules.named_modules():
        if isinstance(module, TemporalSelfAttention):
            for old, new in OFFICIAL_TO_DIFFUSERS:
                name = f"{name}.".replace(old, new).rstrip(".")
            layers[name] = module
    return layers


def pag_layers(unet: torch.nn.Module, patterns: tuple[str, ...]) -> list[torch.nn.Module]:
    """The layers `patterns` pick (`PAG.layers`); a pattern that picks none is one line naming a few layers."""
    layers = self_attention_layers(unet)
    picked: dict[int, torch.nn.Module] = {}
    for pattern in patterns:
        found = [module for name, module in layers.items() if re.search(pattern, name)]
        if not found:
            some = ", ".join(list(layers)[:2])
            raise InputError(f"PAG layer pattern {pattern!r} matches no self-attention layer (named like {some}, …)")
        picked.update((id(m), m) for m in found)
    return list(picked.values())


class IdentitySelfAttnProcessor:
    """An image self-attention whose attention map is the identity: each token's value, projected (PAG's
    perturbation), with the layer's norms, residual and output rescale as its own processor applies them."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        shape = hidden_states.shape
        if hidden_states.ndim == 4:
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        out = attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))
        if len(shape) == 4:
            out = out.transpose(1, 2).reshape(shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


@contextmanager
def perturbed(layers: list[torch.nn.Module]) -> Iterator[None]:
    """Within: `layers`' self-attention is the identity (image layers by `IdentitySelfAttnProcessor`, motion modules
    by their `identity` switch); after, as before."""
    saved = []
    try:
        for layer in layers:
            if isinstance(layer, TemporalSelfAttention):
                layer.identity = True
            else:
                saved.append((layer, layer.processor))
                layer.processor = IdentitySelfAttnProcessor()
        yield
    finally:
        for layer in layers:
            if isinstance(layer, TemporalSelfAttention):
                layer.identity = False
        for layer, processor in saved:
            layer.processor = processor


def perturbed_predictor(
    predict: Predictor, layers: list[torch.nn.Module], uncond: torch.Tensor | None = None
) -> Predictor:
    """`predict` with `layers` perturbed for each call; with `uncond`, each call made as a guided batch
    [uncond, the call's text] and its conditional half returned."""

    def predict_perturbed(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        with perturbed(layers):
            if uncond is None:
                return predict(x, t, text, frames)
            return predict(torch.cat([x, x]), t, torch.cat([uncond, text]), frames).chunk(2)[1]

    return predict_perturbed


def check_pag(pag: PAG | None, unet: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers `pag` perturbs (none without PAG or at scale 0), before any work; one line for patterns that pick
    nothing."""
    if pag is None or pag.scale == 0:
        return []
    return pag_layers(unet, pag.layers)


def pag_guidance(
    pag: PAG | None, layers: list[torch.nn.Module], predict: Predictor, steered_uncond: torch.Tensor | None = None
) -> tuple[Predictor | None, Callable[[torch.Tensor], float] | None]:
    """(the perturbed predictor, p(t)) that `guided` takes (`check_pag`'s layers); (None, None) without PAG.
    `steered_uncond`: the unconditional text of a guided run whose conditions read the guided batch's halves."""
    if not layers:
        return None, None
    return perturbed_predictor(predict, layers, steered_uncond), pag.scale_at


def check_pag_keys(values: dict, where: str) -> None:
    """A run entry's pag_scale, pag_adaptive_scale and pag_layers (one pattern or a list), checked in place as
    generate's; an InputError starting with `where`."""
    for key in ("pag_scale", "pag_adaptive_scale", "pag_layers"):
        if values.get(key) is None:
            values.pop(key, None)
    if isinstance(values.get("pag_layers"), str):
        values["pag_layers"] = [values["pag_layers"]]
    if "pag_scale" not in values:
        if "pag_adaptive_scale" in values or "pag_layers" in values:
            raise InputError(f"{where}: pag_adaptive_scale and pag_layers need pag_scale")
        return
    layers = values.get("pag_layers", list(DEFAULT_LAYERS))
    layers = tuple(layers) if isinstance(layers, list) else layers
    try:
        PAG(values["pag_scale"], values.get("pag_adaptive_scale", 0.0), layers)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
