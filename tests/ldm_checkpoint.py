"""LDM-layout checkpoints for tests: the package's writer (`animatediff.formats.ldm_export`), plus the variants
older files come in.

The rename table there is written by hand from the CompVis layout, independently of diffusers' own conversion,
so loading its files through the library (diffusers' converter) checks that conversion rather than repeating it.
"""

from __future__ import annotations

import os

import torch

from animatediff.formats.ldm_export import ldm_state_dict, save_single_file

__all__ = ["ldm_state_dict", "save_ldm_checkpoint"]


def save_ldm_checkpoint(  # noqa: ANN001
    path: str | os.PathLike, unet, vae, text_encoder, wrap: bool = False, text_model_level: bool = True
) -> None:
    """wrap: a .ckpt as LDM training saved it, `{"state_dict": …}`."""
    if wrap:
        torch.save({"state_dict": ldm_state_dict(unet, vae, text_encoder, text_model_level)}, path)
    else:
        save_single_file(unet, vae, text_encoder, path, text_model_level=text_model_level)
