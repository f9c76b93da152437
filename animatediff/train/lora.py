"""MotionLoRA training: PEFT LoRA adapters on the motion modules' attention projections, and their export.

PEFT fits the hook-based model cleanly: it swaps `to_q`, `to_k`, `to_v` and `to_out.0` inside each
`TemporalSelfAttention` for LoRA-wrapped layers, while the UNet's forward hooks hold the `MotionModule`
objects themselves, which stay in place.

Exports (from a state dict, so gathered ZeRO-3/FSDP weights work as well):
- official MotionLoRA layout: `<module path>.attention_blocks.{0,1}.processor.to_{q,k,v,out}_lora.{down,up}.weight`,
  merged by the official code as W += alpha·up@down (no rank scaling) — so the PEFT scale alpha/rank is folded
  into `up`;
- diffusers (PEFT) layout: `unet.<diffusers module path>.to_q.lora_A.weight` / `lora_B.weight` in
  `pytorch_lora_weights.safetensors`, as `AnimateDiffPipeline.load_lora_weights` reads (scale also folded).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from animatediff.errors import InputError
from animatediff.formats.motion_lora import save_motion_lora
from animatediff.formats.motion_module_files import official_to_diffusers
from animatediff.formats.state_dicts import write_state_dict
from animatediff.models.motion_modules import MotionModules

TARGET_MODULES = r".*attention_blocks\.\d+\.(to_q|to_k|to_v|to_out\.0)"
ADAPTER = "default"
DIFFUSERS_LORA_FILE = "pytorch_lora_weights.safetensors"
# A PEFT LoRA matrix, relative to the motion modules: <path>.attention_blocks.N.to_q.lora_A.default.weight
_PEFT_KEY = re.compile(r"^(.*\.attention_blocks\.\d+\.)(to_q|to_k|to_v|to_out\.0)\.lora_([AB])\.default\.weight$")


def add_motion_lora(modules: MotionModules, rank: int, alpha: float | None = None) -> list[nn.Parameter]:
    """Insert LoRA adapters into every temporal attention projection; return the LoRA parameters (trainable).

    The up matrices start at zero (PEFT's default), so the adapted module starts exactly as the original.
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ImportError("MotionLoRA training needs PEFT: pip install 'animatediff[train]' (or peft)") from None

    widths = [m.in_features for n, m in modules.named_modules() if re.fullmatch(TARGET_MODULES, n)]
    if not widths:
        raise InputError("no temporal attention projections found to put LoRA adapters on")
    if rank > min(widths):
        raise InputError(
            f"lora.rank {rank} is larger than the motion module's narrowest attention ({min(widths)} features)"
        )
    modules.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=TARGET_MODULES, lora_dropout=0.0)
    inject_adapter_in_model(config, modules, adapter_name=ADAPTER)
    params = [p for name, p in modules.named_parameters() if ".lora_A." in name or ".lora_B." in name]
    for name, p in modules.named_parameters():
        p.requires_grad_(".lora_A." in name or ".lora_B." in name)
    if not params:
        raise InputError("no temporal attention projections found to put LoRA adapters on")
    return params


def lora_pairs(
    sd: dict[str, torch.Tensor], key: re.Pattern = _PEFT_KEY, what: str = "MotionLoRA"
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """PEFT keys matched by `key` (groups: module prefix, projection, 'A' or 'B'; by default motion-module-relative
    ones) → {target weight name: (down, up)} (PEFT scale not applied)."""
    down: dict[str, torch.Tensor] = {}
    up: dict[str, torch.Tensor] = {}
    for name, value in sd.items():
        if m := key.match(name):
            prefix, proj, which = m.groups()
            (down if which == "A" else up)[f"{prefix}{proj}.weight"] = value
    if not down or set(down) != set(up):
        raise InputError(f"state dict holds no complete {what} (keys like '...to_q.lora_A.default.weight')")
    return {target: (down[target], up[target]) for target in sorted(down)}


def diffusers_lora_state_dict(motion_sd: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """Motion-module-relative PEFT keys → diffusers' `unet.…attn1.to_q.lora_A.weight` layout, scale folded."""
    renamed = {}
    for key, value in motion_sd.items():
        m = _PEFT_KEY.match(key)
        if not m:
            continue
        prefix, proj, which = m.groups()
        renamed[f"{prefix}{proj}.lora_{which}.weight"] = value if which == "A" else value * scale
    return {f"unet.{k}": v for k, v in official_to_diffusers(renamed).items()}


def save_motion_lora_files(motion_sd: dict[str, torch.Tensor], scale: float, folder: Path) -> tuple[Path, Path]:
    """Write `motion_lora.safetensors` (official layout) and `motion_lora_diffusers/` into `folder`."""
    official_path = save_motion_lora(lora_pairs(motion_sd), folder / "motion_lora.safetensors", alpha=scale)
    diffusers_folder = folder / "motion_lora_diffusers"
    write_state_dict(diffusers_folder / DIFFUSERS_LORA_FILE, diffusers_lora_state_dict(motion_sd, scale))
    return official_path, diffusers_folder
