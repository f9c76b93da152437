"""A VAE read from a user's file or folder, to replace a base model's (`--vae`, A1111's "SD VAE").

Accepted: a diffusers VAE folder (config.json + diffusion_pytorch_model.safetensors or .bin), a diffusers pipeline
folder (its vae/), a folder holding one weights file, a hub id or hub file of any of these (`animatediff.hub`), or a
single file (.safetensors, or a .ckpt/.pt/.pth/.bin pickle read with weights_only) holding the VAE in either layout:

- the original LDM/CompVis names (`encoder.down.0.block.0.*`, `decoder.up.*`, `quant_conv`, `post_quant_conv`),
  bare as a VAE-only file (vae-ft-mse-840000-ema-pruned) or under `first_stage_model.`, as in a whole SD
  checkpoint, of which only that part is read; renamed by diffusers' `convert_ldm_vae_checkpoint`;
- diffusers' names (`encoder.down_blocks.*`), as they are (the attention names of older diffusers files, `query`,
  `key`, `value`, `proj_attn`, renamed as diffusers renames them).

The VAE built always has the base's VAE config, so its `scaling_factor` (a property of the latent space the UNet
was trained in) stays the base's, as in A1111; the file or folder supplies the weights (a folder's config.json
only reads them), which must fit that config exactly (`single_file._load_strict`). Anything else is one line
(`InputError`), never a torch traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn

from animatediff.base_model import read_json
from animatediff.errors import InputError, InputNotFound
from animatediff.formats.ldm_export import VAE_PREFIX
from animatediff.formats.single_file import UNET_PREFIX, _load_strict, adapter_kind, read_single_file
from animatediff.formats.state_dicts import PICKLE_SUFFIXES, read_state_dict
from animatediff.hub import resolve_path

LDM_KEYS = ("encoder.down.", "decoder.up.")
"""Key prefixes only the LDM VAE layout has."""
DIFFUSERS_KEYS = ("encoder.down_blocks.", "decoder.up_blocks.")
"""Key prefixes only the diffusers VAE layout has."""
_OLD_ATTENTION = re.compile(r"(\.attentions\.\d+\.)(query|key|value|proj_attn)\.")
_NEW_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_LATENT_FAMILIES = {16: "SD3 or Flux"}


def load_vae(path_or_id: str | os.PathLike, like: AutoencoderKL) -> AutoencoderKL:
    """A new AutoencoderKL with `like`'s config, dtype and device and the weights of the VAE `path_or_id` names
    (see the module docstring for what it may be), in eval mode without gradients."""
    name = os.fspath(path_or_id)
    path = resolve_path(path_or_id, "VAE")
    sd = _folder_weights(path, like, name) if path.is_dir() else vae_state_dict(path, like, name)
    check_latent_channels(sd, like, name)
    # Every value of `like`'s config, those it took by default included (from_config would take the defaults of
    # the diffusers installed, where `like`'s were set on it after it was built).
    config = {k: v for k, v in like.config.items() if k != "_use_default_values"}
    vae = AutoencoderKL.from_config(config)
    nn.Module.to(vae, like.dtype)  # torch's own: diffusers' warns of fp32 modules on any cast (AutoencoderKL has none)
    _load_strict(vae, sd, "VAE", name)
    return vae.to(like.device).eval().requires_grad_(False)


def vae_state_dict(path: str | os.PathLike, like: AutoencoderKL, name: str | None = None) -> dict[str, torch.Tensor]:
    """The diffusers-named VAE weights of a single file in the LDM or diffusers layout (a whole SD checkpoint's
    `first_stage_model.*` part), LDM names converted for `like`'s config; one line when it holds no VAE."""
    name = name or os.fspath(path)
    sd = _read_tensors(Path(path))
    if any(k.startswith(VAE_PREFIX) for k in sd):
        sd = {k.removeprefix(VAE_PREFIX): v for k, v in sd.items() if k.startswith(VAE_PREFIX)}
    if any(k.startswith(LDM_KEYS) for k in sd):
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        return convert_ldm_vae_checkpoint(sd, dict(like.config))
    if any(k.startswith(DIFFUSERS_KEYS) for k in sd):
        return {_OLD_ATTENTION.sub(lambda m: m[1] + _NEW_ATTENTION[m[2]] + ".", k): v for k, v in sd.items()}
    raise InputError(f"{name} holds no VAE weights (encoder.*, decoder.*, in LDM or diffusers names): {_what(sd)}")


def check_latent_channels(sd: dict[str, torch.Tensor], like: AutoencoderKL, name: str) -> None:
    """One line when a VAE's latents have another channel count than the base's (e.g. an SD3 or Flux VAE)."""
    weight = sd.get("decoder.conv_in.weight")
    expected = like.config.latent_channels
    if weight is not None and weight.ndim == 4 and weight.shape[1] != expected:
        found = weight.shape[1]
        family = f" ({_LATENT_FAMILIES[found]})" if found in _LATENT_FAMILIES else ""
        raise InputError(
            f"{name}: a VAE with {found}-channel latents{family}, the base's VAE has {expected}; "
            "use a VAE of the base's family"
        )


def _what(sd: dict[str, torch.Tensor]) -> str:
    if any(k.startswith(UNET_PREFIX) for k in sd):
        return f"a single-file SD checkpoint without a VAE (no {VAE_PREFIX}* weights)"
    if what := adapter_kind(sd):
        return what
    if any(k.startswith(("down_blocks.", "up_blocks.", "unet.")) for k in sd):
        return "UNet weights"
    return f"something else (first key {next(iter(sd), None)!r})"


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; of a .safetensors holding a whole checkpoint, only its VAE part is read."""
    if path.suffix != ".safetensors":
        return read_single_file(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            if any(k.startswith(VAE_PREFIX) for k in keys):
                keys = [k for k in keys if k.startswith(VAE_PREFIX)]
            return {k: f.get_tensor(k) for k in keys}
    except Exception:  # noqa: BLE001 - the full read says what is wrong with the file, in one line
        read_state_dict(path)
        raise


def _folder_weights(folder: Path, like: AutoencoderKL, name: str) -> dict[str, torch.Tensor]:
    """The VAE weights of a diffusers VAE folder, of a pipeline folder's vae/, or of a folder's one weights file."""
    for candidate in (folder, folder / "vae"):
        config = candidate / "config.json"
        if config.is_file():
            kind = read_json(config, f"{name}: config.json").get("_class_name", "AutoencoderKL")
            if kind != "AutoencoderKL":
                raise InputError(f"{name}: {candidate} holds a {kind}, not a VAE (AutoencoderKL)")
            try:
                return AutoencoderKL.from_pretrained(candidate, local_files_only=True).state_dict()
            except (OSError, ValueError, RuntimeError) as err:
                first = str(err).splitlines()[0] if str(err) else ""
                raise InputError(
                    f"{name}: the VAE in {candidate} could not be loaded ({type(err).__name__}: {first})"
                ) from None
    files = [f for f in sorted(folder.iterdir()) if f.suffix == ".safetensors" or f.suffix in PICKLE_SUFFIXES]
    if len(files) != 1:
        raise InputNotFound(
            f"{name} is not a VAE folder: no config.json (a diffusers VAE), no vae/ (a diffusers pipeline) and "
            f"{len(files)} weights files, not one"
        )
    return vae_state_dict(files[0], like, name)
