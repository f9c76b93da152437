"""LoRA files and merging them into weights, switchable by name.

Key layouts read (one file may be any of them):

- kohya / A1111: `lora_unet_<module path, dots as _>.lora_down.weight`, `.lora_up.weight`, optional `.alpha`;
  `lora_te_` (or `lora_te1_`) for the text encoder, `lora_te2_` for SDXL's second; SDXL UNet paths in the SGM
  layout (`input_blocks_4_1_…`), resolved by `lora_families.sgm_module_names`.
- diffusers / PEFT: `unet.<module>.lora_A.weight` / `.lora_B.weight`, `text_encoder.<module>…`,
  `text_encoder_2.<module>…` (SDXL); the older diffusers spellings `.lora.down.weight` / `.lora.up.weight` and
  `.lora_linear_layer.down|up.weight`.
- attention processors (official AnimateDiff MotionLoRAs and v3 domain adapter, diffusers ≤ 0.20):
  `<attention>.processor.to_{q,k,v,out}_lora.{down,up}.weight`, targeting `<attention>.to_q` … `to_out.0`.

Merge rule: W ← W + scale · (alpha / rank) · up @ down, with alpha = rank (a factor of 1) when the file carries none.
Convolutions (1×1 and 3×3, kohya "LoCon") use the same rule on flattened kernels. The official AnimateDiff
runner ignored kohya's `.alpha` (W ← W + scale · up @ down); we follow kohya, A1111 and diffusers instead.

`LoraMerger` keeps the original of every weight it touches and recomputes a weight from it whenever the set of
active LoRAs or their scales change, so removing a LoRA restores the base bit for bit and several LoRAs compose
independently of the order they were added in. That gives PEFT's "switchable adapters" at merged-weight speed.
A LoRA for another base family (SDXL on SD1.x and the reverse, `lora_families.check_lora_family`) is refused in one
line before anything merges.

Writing: `save_kohya_lora` writes the kohya layout (what CivitAI LoRAs hold), from `{module path: (down, up,
alpha)}` or from a model carrying PEFT LoRA layers (`peft_lora_layers` reads those out). kohya keeps alpha apart
from the rank, as PEFT does, so the file merges to exactly what PEFT computes: W + (alpha / rank) · up @ down.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from animatediff.errors import InputError
from animatediff.formats.lora_families import check_lora_family, is_sdxl_unet, sgm_module_names
from animatediff.formats.state_dicts import read_weights, write_state_dict

# (pattern on the end of a key, role); the text before the match is the target module path.
_ROLE_SUFFIXES = (
    (re.compile(r"\.lora_down\.weight$"), "down"),
    (re.compile(r"\.lora_up\.weight$"), "up"),
    (re.compile(r"\.lora_A(?:\.[A-Za-z0-9_-]+)?\.weight$"), "down"),
    (re.compile(r"\.lora_B(?:\.[A-Za-z0-9_-]+)?\.weight$"), "up"),
    (re.compile(r"\.lora(?:_linear_layer)?\.down\.weight$"), "down"),
    (re.compile(r"\.lora(?:_linear_layer)?\.up\.weight$"), "up"),
    (re.compile(r"\.alpha$"), "alpha"),
)
_PROCESSOR = re.compile(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
# kohya prefix → (component, the module path is underscored)
_KOHYA_PREFIXES = (
    ("lora_unet_", "unet"),
    ("lora_te1_", "text_encoder"),
    ("lora_te2_", "text_encoder_2"),
    ("lora_te_", "text_encoder"),
)
_DOTTED_PREFIXES = (("unet.", "unet"), ("text_encoder.", "text_encoder"), ("text_encoder_2.", "text_encoder_2"))
_LDM_NAMES = ("input_blocks", "output_blocks", "middle_block")


@dataclass
class LoraLayer:
    """One low-rank update W ← W + scale · factor · up @ down of one module's weight."""

    component: str
    """Which model it targets: 'unet', 'text_encoder', 'text_encoder_2' (SDXL) or 'motion_modules'."""
    target: str
    """Module path inside that model: dotted, or kohya's underscored form (resolved against the model)."""
    down: torch.Tensor
    """(rank, in_features) or (rank, in_channels, kh, kw)."""
    up: torch.Tensor
    """(out_features, rank) or (out_channels, rank, 1, 1)."""
    alpha: float | None = None
    """kohya's network alpha; the factor is alpha / rank, or 1 when absent."""
    underscored: bool = False
    """True for kohya names, whose dots became underscores."""

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def factor(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.rank


@dataclass
class Lora:
    """The layers of one LoRA file."""

    name: str
    layers: list[LoraLayer] = field(default_factory=list)


def _split_key(key: str, default_component: str) -> tuple[str, str, bool, str] | None:
    """key → (component, target module, underscored?, role), or None for a key that is no LoRA tensor."""
    if m := _PROCESSOR.match(key):
        path, proj, role = m.groups()
        target, role_name = f"{path}.{'to_out.0' if proj == 'to_out' else proj}", role
    else:
        for pattern, role in _ROLE_SUFFIXES:
            if pattern.search(key):
                target, role_name = pattern.sub("", key), role
                break
        else:
            return None
    target = target.removeprefix("base_model.model.")
    for prefix, component in _KOHYA_PREFIXES:
        if target.startswith(prefix):
            return component, target.removeprefix(prefix), True, role_name
    for prefix, component in _DOTTED_PREFIXES:
        if target.startswith(prefix):
            return component, target.removeprefix(prefix), False, role_name
    return default_component, target, False, role_name


def parse_lora(sd: dict[str, torch.Tensor], name: str = "lora", default_component: str = "unet") -> Lora:
    """Group a LoRA state dict into layers; keys without a component prefix go to `default_component`."""
    parts: dict[tuple[str, str, bool], dict[str, torch.Tensor]] = {}
    ignored = []
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            continue
        split = _split_key(key, default_component)
        if split is None:
            ignored.append(key)
            continue
        component, target, underscored, role = split
        slot = parts.setdefault((component, target, underscored), {})
        if role in slot:
            raise InputError(f"{name}: two {role} tensors for {target!r} (e.g. {key!r})")
        slot[role] = value
    if not parts:
        example = f" (first key: {next(iter(sd), None)!r})" if sd else ""
        raise InputError(f"{name}: no LoRA weights found{example}")
    if ignored:
        raise InputError(f"{name}: {len(ignored)} keys are not LoRA weights, e.g. {ignored[:3]}")
    layers = []
    for (component, target, underscored), slot in parts.items():
        if "down" not in slot or "up" not in slot:
            missing = "down" if "down" not in slot else "up"
            raise InputError(f"{name}: LoRA layer {target!r} has no {missing} weight")
        alpha = float(slot["alpha"]) if "alpha" in slot else None
        layers.append(LoraLayer(component, target, slot["down"], slot["up"], alpha, underscored))
    return Lora(name, layers)


def load_lora(path: str | os.PathLike, default_component: str = "unet") -> Lora:
    """Read a LoRA file (.safetensors, or a torch pickle) or a hub file reference."""
    sd, file = read_weights(path, "LoRA")
    return parse_lora(sd, file.name, default_component)


def lora_delta(down: torch.Tensor, up: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """up @ down in float32, reshaped to the target weight (linear, or a 1×1 / k×k convolution)."""
    return (up.flatten(1).float() @ down.flatten(1).float()).reshape(shape)


@dataclass
class _Resolved:
    component: str
    param: str
    down: torch.Tensor
    up: torch.Tensor
    factor: float


@dataclass
class _Entry:
    layers: list[_Resolved]
    scale: float


class LoraMerger:
    """Merges named LoRAs into the weights of several models; any one can be rescaled or removed exactly."""

    def __init__(self, components: dict[str, nn.Module]) -> None:
        self.components = components
        self._entries: dict[str, _Entry] = {}
        self._originals: dict[tuple[str, str], torch.Tensor] = {}

    @property
    def active(self) -> dict[str, float]:
        """Names of the merged LoRAs and their scales, in the order they were added."""
        return {name: entry.scale for name, entry in self._entries.items()}

    def _lookup(self, component: str) -> tuple[dict[str, str], dict[str, str]]:
        """(dotted name → weight parameter name, underscored name → weight parameter name) of a model."""
        dotted, underscored = {}, {}
        model = self.components[component]
        for name, module in model.named_modules():
            if isinstance(getattr(module, "weight", None), nn.Parameter):
                # transformers 4 named CLIP's modules `text_model.…`; version 5 drops that level.
                for alias in (name, f"text_model.{name}"):
                    dotted[alias] = f"{name}.weight"
                    underscored[alias.replace(".", "_")] = f"{name}.weight"
        if component == "unet" and is_sdxl_unet(model):  # kohya's SDXL LoRAs use the SGM names
            for sgm, name in sgm_module_names(model).items():
                dotted.setdefault(sgm, f"{name}.weight")
                underscored.setdefault(sgm.replace(".", "_"), f"{name}.weight")
        return dotted, underscored

    def _resolve(self, lora: Lora, strict: bool) -> list[_Resolved]:
        check_lora_family(lora, self.components)
        lookups = {c: self._lookup(c) for c in {layer.component for layer in lora.layers} if c in self.components}
        resolved, unmatched = [], []
        for layer in lora.layers:
            lookup = lookups.get(layer.component)
            param_name = lookup[int(layer.underscored)].get(layer.target) if lookup else None
            if param_name is None:
                unmatched.append(f"{layer.component}:{layer.target}")
                continue
            weight = self.components[layer.component].get_parameter(param_name)
            down, up = layer.down, layer.up
            if up.shape[1] != down.shape[0] or up.shape[0] * down[0].numel() != weight.numel():
                raise InputError(
                    f"{lora.name}: LoRA layer {layer.target!r} (down {tuple(down.shape)}, up {tuple(up.shape)}) does "
                    f"not fit the weight {param_name} of shape {tuple(weight.shape)}; is this LoRA for another base "
                    "model (SD2/SDXL)?"
                )
            dev = weight.device
            resolved.append(_Resolved(layer.component, param_name, down.to(dev), up.to(dev), layer.factor))
        if unmatched and (strict or not resolved):
            hint = ""
            if any(n in u for u in unmatched for n in _LDM_NAMES):
                hint = " The keys use the original LDM block names (input_blocks…), which this loader does not map."
            raise InputError(
                f"{lora.name}: {len(resolved)} of {len(lora.layers)} LoRA layers match a module of the "
                f"{' / '.join(self.components)}; unmatched e.g. {unmatched[:3]}.{hint}"
            )
        return resolved

    def add(self, name: str, lora: Lora, scale: float = 1.0, strict: bool = True) -> int:
        """Merge `lora` under `name` (replacing a LoRA of that name); returns the number of layers merged.

        strict: every layer must match a module (else only layers that match merge; none matching is an error).
        """
        if name in self._entries:
            self.remove(name)
        layers = self._resolve(lora, strict)
        for layer in layers:
            key = (layer.component, layer.param)
            if key not in self._originals:
                self._originals[key] = self._param(*key).detach().clone()
        self._entries[name] = _Entry(layers, float(scale))
        self._refresh({(layer.component, layer.param) for layer in layers})
        return len(layers)

    def set_scale(self, name: str, scale: float) -> None:
        entry = self._entry(name)
        entry.scale = float(scale)
        self._refresh({(layer.component, layer.param) for layer in entry.layers})

    def remove(self, name: str) -> None:
        """Unmerge one LoRA; weights no other LoRA touches get their original values back exactly."""
        entry = self._entry(name)
        del self._entries[name]
        self._refresh({(layer.component, layer.param) for layer in entry.layers})

    def clear(self, component: str | None = None) -> None:
        """Unmerge every LoRA (or every LoRA touching `component`)."""
        for name in [n for n, e in self._entries.items() if component is None or _touches(e, component)]:
            self.remove(name)

    def _entry(self, name: str) -> _Entry:
        if name not in self._entries:
            raise KeyError(f"no LoRA named {name!r} is merged; merged: {list(self._entries)}")
        return self._entries[name]

    def _param(self, component: str, param: str) -> nn.Parameter:
        return self.components[component].get_parameter(param)

    @torch.no_grad()
    def _refresh(self, keys: set[tuple[str, str]]) -> None:
        """Recompute each weight as original + Σ scale · factor · up @ down over the LoRAs touching it."""
        touching: dict[tuple[str, str], list[tuple[float, _Resolved]]] = {key: [] for key in keys}
        for entry in self._entries.values():
            for layer in entry.layers:
                if (layer.component, layer.param) in touching:
                    touching[layer.component, layer.param].append((entry.scale, layer))
        for key, updates in touching.items():
            weight = self._param(*key)
            original = self._originals[key].to(weight.device)
            if not updates:
                weight.copy_(original)
                del self._originals[key]
                continue
            merged = original.float()
            for scale, layer in updates:
                merged = merged + scale * layer.factor * lora_delta(layer.down, layer.up, weight.shape)
            weight.copy_(merged.to(weight.dtype))


def _touches(entry: _Entry, component: str) -> bool:
    return any(layer.component == component for layer in entry.layers)


def parse_scaled_path(spec: str, default_scale: float = 1.0) -> tuple[str, float]:
    """'path[:scale]' → (path, scale); a scale that is not a number is an error (a path may contain ':')."""
    path, sep, scale = spec.rpartition(":")
    if not sep or "/" in scale or "\\" in scale or (len(path) == 1 and path.isalpha()):
        return spec, default_scale  # no scale, or a Windows drive letter such as C:\…
    try:
        return path, float(scale)
    except ValueError:
        raise InputError(
            f"{spec!r}: LoRA scale {scale!r} is not a number (use PATH:SCALE, e.g. style.safetensors:0.8)"
        ) from None


def peft_lora_layers(model: nn.Module, adapter: str = "default") -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """`{module path: (down, up, alpha)}` of the PEFT LoRA layers (adapter `adapter`) in `model`.

    alpha is PEFT's scaling × rank, so the kohya factor alpha / rank equals PEFT's scaling (rsLoRA included).
    Paths lose the `base_model.model.` level `get_peft_model` adds, so they name modules of the plain model.
    """
    layers = {}
    for name, module in model.named_modules():
        lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        if not isinstance(lora_a, nn.ModuleDict) or adapter not in lora_a:
            continue
        if getattr(module, "use_dora", {}).get(adapter) or getattr(module, "lora_bias", {}).get(adapter):
            raise InputError(f"{name}: DoRA and LoRA biases have no kohya LoRA equivalent")
        down, up = lora_a[adapter].weight, lora_b[adapter].weight
        alpha = float(module.scaling[adapter]) * down.shape[0]
        layers[name.removeprefix("base_model.model.")] = (down, up, alpha)
    return layers


def save_kohya_lora(
    layers: Mapping[str, tuple[torch.Tensor, torch.Tensor, float]] | nn.Module,
    path: str | os.PathLike,
    component: str = "unet",
    dtype: torch.dtype | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a LoRA in the kohya layout: `lora_unet_<module path, dots as _>.lora_down.weight`, `.lora_up.weight`
    and `.alpha` (a scalar tensor); .safetensors (or a torch pickle), written atomically.

    layers: `{dotted module path: (down (rank, in…), up (out, rank…), alpha)}`, or a model with PEFT LoRA layers
    (adapter "default"). component: 'unet' (`lora_unet_`), 'text_encoder' (`lora_te_`, paths as in
    transformers 4, `text_model.encoder…`) or 'text_encoder_2' (`lora_te2_`, SDXL's second). dtype: cast the
    weights (e.g. torch.float16); None keeps float32.
    """
    if isinstance(layers, nn.Module):
        layers = peft_lora_layers(layers)
    prefixes = {"unet": "lora_unet_", "text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}
    if component not in prefixes:
        raise InputError(f"unknown LoRA component {component!r}; expected one of {', '.join(prefixes)}")
    dtype = dtype or torch.float32
    sd = {}
    for target, (down, up, alpha) in layers.items():
        if up.shape[1] != down.shape[0]:
            raise InputError(f"{target}: up {tuple(up.shape)} and down {tuple(down.shape)} ranks differ")
        name = prefixes[component] + target.replace(".", "_")
        if f"{name}.alpha" in sd:  # kohya names cannot tell `a.b_c` from `a_b.c`
            raise InputError(f"two LoRA layers share the kohya name {name!r}")
        sd[f"{name}.lora_down.weight"] = down.detach().to(dtype).clone()
        sd[f"{name}.lora_up.weight"] = up.detach().to(dtype).clone()
        sd[f"{name}.alpha"] = torch.tensor(float(alpha), dtype=dtype)
    if not sd:
        raise InputError("no LoRA layers to save (a model needs PEFT LoRA layers under the adapter 'default')")
    return write_state_dict(path, sd, metadata)
