"""Domain adapter training (paper Sec. 4.1): a LoRA on the image UNet's spatial attention, trained on single frames
of the training videos with the whole base frozen, so that it absorbs what the video data looks like (its blur,
compression, watermarks) and the motion module trained over base + adapter need not. At inference the adapter is
merged at a scale α (`--adapter-lora PATH:α`); α < 1 takes the video data's look back out.

PEFT puts the adapters on `to_q`, `to_k`, `to_v` and `to_out.0` of every spatial self- and cross-attention
(`…attentions.N.transformer_blocks.M.attn1|attn2`), the layers the released v3 adapter (`v3_sd15_adapter.ckpt`)
holds. The motion modules take no part: the trainer switches them off and feeds one frame per clip.

Exports (from a state dict, so gathered ZeRO-3/FSDP weights work as well), both loadable by `--adapter-lora`:
- `domain_adapter.safetensors`: the official layout, `<attention>.processor.to_{q,k,v,out}_lora.{down,up}.weight`,
  merged as W += α·up@down, so PEFT's scale alpha/rank is folded into `up`;
- `domain_adapter_diffusers/pytorch_lora_weights.safetensors`: diffusers' (PEFT) layout,
  `unet.<attention>.to_q.lora_A.weight` / `lora_B.weight`, scale folded as well.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from animatediff.errors import InputError
from animatediff.formats.motion_lora import save_adapter_lora
from animatediff.formats.state_dicts import write_state_dict
from animatediff.train.export import gathered_weights
from animatediff.train.lora import lora_pairs

TARGET_MODULES = r".*attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)"
ADAPTER = "default"
ADAPTER_FILE = "domain_adapter.safetensors"
DIFFUSERS_FOLDER = "domain_adapter_diffusers"
DIFFUSERS_LORA_FILE = "pytorch_lora_weights.safetensors"
# A PEFT LoRA matrix, relative to the 2-D UNet: <attention>.to_q.lora_A.default.weight
_PEFT_KEY = re.compile(r"^(.*\.attn[12]\.)(to_q|to_k|to_v|to_out\.0)\.lora_([AB])\.default\.weight$")


def is_adapter_key(key: str) -> bool:
    """Whether a state-dict key (of the 2-D UNet, or the animation UNet's `unet.…`) is a domain-adapter matrix."""
    return _PEFT_KEY.match(key) is not None


def add_domain_adapter(unet: nn.Module, rank: int, alpha: float | None = None) -> list[nn.Parameter]:
    """Insert LoRA adapters into every spatial attention projection of the 2-D `unet` (which stays frozen) and
    return the LoRA parameters, in float32 whatever the base's dtype. The up matrices start at zero, so the adapted
    UNet starts exactly as the base."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ImportError("domain adapter training needs PEFT: pip install 'animatediff[train]' (or peft)") from None

    narrowest = min((m.in_features for n, m in unet.named_modules() if re.fullmatch(TARGET_MODULES, n)), default=0)
    if not narrowest:
        raise InputError("the base UNet has no spatial attention projections to put a domain adapter on")
    if rank > narrowest:
        raise InputError(f"adapter.rank {rank} is larger than the narrowest attention layer ({narrowest} features)")
    unet.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=TARGET_MODULES, lora_dropout=0.0)
    inject_adapter_in_model(config, unet, adapter_name=ADAPTER)
    params = []
    for name, p in unet.named_parameters():
        trained = is_adapter_key(name)
        if trained:
            p.data = p.data.float()  # trained weights stay fp32 under mixed precision
            params.append(p)
        p.requires_grad_(trained)
    return params


def pick_frames(pixel_values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(b, f, 3, H, W) clips → (b, 1, 3, H, W): one frame of each clip, drawn uniformly from `generator`."""
    b, f = pixel_values.shape[:2]
    index = torch.randint(0, f, (b,), generator=generator)
    return pixel_values[torch.arange(b), index].unsqueeze(1)


def save_domain_adapter(unet_sd: dict[str, torch.Tensor], scale: float, folder: Path) -> tuple[Path, Path]:
    """Write `domain_adapter.safetensors` (official v3 layout) and `domain_adapter_diffusers/` into `folder`."""
    pairs = lora_pairs(unet_sd, _PEFT_KEY, "domain adapter")
    official = save_adapter_lora(pairs, folder / ADAPTER_FILE, alpha=scale)
    diffusers = {}
    for target, (down, up) in pairs.items():
        stem = f"unet.{target.removesuffix('.weight')}"
        diffusers[f"{stem}.lora_A.weight"] = down.detach().float().clone()
        diffusers[f"{stem}.lora_B.weight"] = up.detach().float() * scale
    write_state_dict(folder / DIFFUSERS_FOLDER / DIFFUSERS_LORA_FILE, diffusers)
    return official, folder / DIFFUSERS_FOLDER


def export_adapter(accelerator, model: nn.Module, folder: Path, scale: float) -> None:  # noqa: ANN001
    """Write the domain adapter of the prepared animation `model` into `folder` (every process calls it; the main
    process writes)."""
    unet_sd = gathered_weights(accelerator, model, "unet.", is_adapter_key)
    if unet_sd is not None:
        save_domain_adapter(unet_sd, scale, folder)
