"""Motion-module files: the official single-file layout, diffusers' MotionAdapter folders, HotShot-XL's layers.

SD1.x modules have four UNet levels (320, 640, 1280, 1280), SDXL's three (320, 640, 1280): the official SDXL beta
(`mm_sdxl_v10_beta.ckpt`, branch `sdxl`: two modules per down block, three per up block, no mid block, a sinusoid of
32 frames, 8 heads) and diffusers' `guoyww/animatediff-motion-adapter-sdxl-beta` read and convert as the SD1.x ones
do, their config inferred from the weights (`MotionModuleConfig.family` says which). A single safetensors in
diffusers' key layout (AnimateDiff-Lightning's form) and HotShot-XL's temporal layers (`motion_module_layouts.py`)
are renamed to the official layout first; a file in none of these layouts is refused in one line naming what it holds.

The temporal-convolution design (`MotionModuleConfig.design`, the module-design ablation) is written and read in the
official layout only, told by its `temporal_convolution.*` keys; diffusers has no such module, so there is no
MotionAdapter folder of it.

Conversion is a rename table plus pure functions; loads are strict after an explicit ignore list.
Official layout: github.com/guoyww/AnimateDiff (see docs/references.md); diffusers: `MotionAdapter`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from animatediff.errors import InputError, InputNotFound
from animatediff.formats.motion_module_layouts import (
    HOTSHOT_BLOCK,
    check_known_layout,
    design_of,
    hotshot_to_official,
    is_hotshot,
)
from animatediff.formats.state_dicts import non_finite, read_state_dict, write_state_dict
from animatediff.hub import resolve_path
from animatediff.io.atomic import write_folder_atomic
from animatediff.models.motion_module import sinusoidal_position_encoding
from animatediff.models.motion_modules import MotionModuleConfig, MotionModules

CONFIG_KEY = "animatediff_config"
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")

# official name fragment → diffusers name fragment, inside one motion module.
OFFICIAL_TO_DIFFUSERS = (
    ("temporal_transformer.", ""),
    ("attention_blocks.0.", "attn1."),
    ("attention_blocks.1.", "attn2."),
    ("norms.0.", "norm1."),
    ("norms.1.", "norm2."),
    ("ff_norm.", "norm3."),
)
PE_OFFICIAL = re.compile(r"(.*\.transformer_blocks\.\d+\.)attention_blocks\.(\d+)\.pos_encoder\.pe$")
PE_DIFFUSERS = re.compile(r"(.*\.transformer_blocks\.\d+\.)pos_embed\.pe$")
MODULE_KEY = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.motion_modules\.(\d+)\.")
INPUT_NORM = re.compile(r"\.temporal_(?:transformer|convolution)\.norm\.weight$")
BLOCK_KEY = re.compile(r"\.(?:transformer|conv)_blocks\.(\d+)\.")


def official_to_diffusers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official keys to diffusers' MotionAdapter keys (one `pos_embed.pe` per transformer block)."""
    out = {}
    for key, value in sd.items():
        if m := PE_OFFICIAL.match(key):
            out[m.group(1).replace("temporal_transformer.", "") + "pos_embed.pe"] = value
            continue
        for old, new in OFFICIAL_TO_DIFFUSERS:
            key = key.replace(old, new)
        out[key] = value
    return out


def diffusers_to_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename diffusers' MotionAdapter keys to the official layout (`pe` copied to both attentions)."""
    out = {}
    for key, value in sd.items():
        if m := PE_DIFFUSERS.match(key):
            prefix = _insert_temporal(m.group(1))
            for i in (0, 1):
                out[f"{prefix}attention_blocks.{i}.pos_encoder.pe"] = value
            continue
        key = _insert_temporal(key)
        for old, new in OFFICIAL_TO_DIFFUSERS[1:]:
            key = key.replace(new, old)
        out[key] = value
    return out


def _insert_temporal(key: str) -> str:
    return re.sub(r"(motion_modules\.\d+\.)", r"\1temporal_transformer.", key, count=1)


def _unwrap(sd: dict) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Peel off the wrappers official and DDP-trained files carry; return (tensors, embedded config)."""
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    config = sd.get(CONFIG_KEY)
    tensors = {}
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            continue  # e.g. `animatediff_config`, epoch counters
        tensors[key.removeprefix("module.")] = value
    if "conv_in.weight" in tensors:
        # A whole-UNet training checkpoint (as the official trainer wrote): the base UNet's own weights are
        # deliberately ignored; only the motion modules are this file's contribution.
        # A UNet without any is kept whole, so that the error says what it is.
        tensors = {k: v for k, v in tensors.items() if "motion_modules." in k or HOTSHOT_BLOCK in k} or tensors
    return tensors, config if isinstance(config, dict) else None


def detect_version(sd: dict[str, torch.Tensor]) -> str:
    """mid-block module → v2; position encoding of length 24 → v1; otherwise v3."""
    if any(k.startswith("mid_block.") for k in sd):
        return "v2"
    pe = next((v for k, v in sd.items() if k.endswith("pos_encoder.pe")), None)
    if pe is not None and pe.shape[-2] == 24:
        return "v1"
    return "v3"


def infer_config(sd: dict[str, torch.Tensor], overrides: dict | None = None) -> MotionModuleConfig:
    """Rebuild the config of an official-layout state dict from its keys and shapes (`overrides`: what a file's
    embedded config says, its design checked against the keys')."""
    channels: dict[int, int] = {}
    per_block: dict[tuple[str, int], set[int]] = {}
    blocks = 1
    for key, value in sd.items():
        if m := MODULE_KEY.match(key):
            kind, i, j = m.group(1), int(m.group(2)), int(m.group(3))
            per_block.setdefault((kind, i), set()).add(j)
            if kind == "down_blocks" and INPUT_NORM.search(key):
                channels[i] = value.shape[0]
        if b := BLOCK_KEY.search(key):
            blocks = max(blocks, int(b.group(1)) + 1)
    if not channels:
        raise InputError(
            "no motion-module weights found (expected keys like "
            "'down_blocks.0.motion_modules.0.temporal_transformer.norm.weight')"
        )
    pe = next((v for k, v in sd.items() if k.endswith("pos_encoder.pe")), None)
    values = dict(
        block_out_channels=tuple(channels[i] for i in sorted(channels)),
        layers_per_block=len(per_block[("down_blocks", 0)]),
        use_mid_block=any(k.startswith("mid_block.") for k in sd),
        num_transformer_blocks=blocks,
        max_frames=pe.shape[-2] if pe is not None else 32,
        version=detect_version(sd),
        design=design_of(sd),
    )
    stated = (overrides or {}).get("design", values["design"])
    if stated != values["design"]:
        raise InputError(
            f"the embedded config says a {stated} motion module, but the weights are a {values['design']}'s"
        )
    values.update(overrides or {})
    return MotionModuleConfig.from_dict(values)


def build_from_state_dict(sd: dict[str, torch.Tensor], config: MotionModuleConfig | None = None) -> MotionModules:
    """Official-layout tensors → MotionModules, strictly: every key must be used and every weight present."""
    config = config or infer_config(sd)
    modules = MotionModules(config)
    weights = {k: v for k, v in sd.items() if not k.endswith("pos_encoder.pe")}
    missing = sorted(set(modules.state_dict()) - set(weights))
    unexpected = sorted(set(weights) - set(modules.state_dict()))
    if missing or unexpected:
        raise InputError(
            "motion module weights do not match the expected layout: "
            + (f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "")
            + ("; " if missing and unexpected else "")
            + (f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})" if unexpected else "")
        )
    shapes = {k: v.shape for k, v in modules.state_dict().items()}
    wrong = [
        f"{k}: file {tuple(v.shape)} vs module {tuple(shapes[k])}" for k, v in weights.items() if v.shape != shapes[k]
    ]
    if wrong:
        raise InputError(f"{len(wrong)} motion module weights have the wrong shape, e.g. {wrong[:3]}")
    modules.load_state_dict(weights, strict=True)
    _load_position_encodings(modules, sd)
    return modules


def _load_position_encodings(modules: MotionModules, sd: dict[str, torch.Tensor]) -> None:
    """Keep the recomputed sinusoid unless the file's `pe` differs (a stretched or trained encoding)."""
    for name, buffer in modules.named_buffers():
        stored = sd.get(name)
        if stored is None:
            continue
        if stored.shape != buffer.shape:
            raise InputError(
                f"{name}: position encoding of shape {tuple(stored.shape)}, expected {tuple(buffer.shape)}"
            )
        reference = sinusoidal_position_encoding(buffer.shape[1], buffer.shape[2])
        if not torch.allclose(stored.float(), reference, atol=1e-3):
            buffer.copy_(stored)


def motion_state_dict(modules: MotionModules) -> dict[str, torch.Tensor]:
    """The official layout, `pos_encoder.pe` included (as released files carry it)."""
    sd = dict(modules.state_dict())
    sd.update({name: buf for name, buf in modules.named_buffers() if name.endswith("pos_encoder.pe")})
    return sd


def _diffusers_config_to_ours(cfg: dict) -> dict:
    def single(value, name: str) -> int:  # noqa: ANN001
        if isinstance(value, (list, tuple)):
            if len(set(value)) != 1:
                raise InputError(f"MotionAdapter config {name}={value}: per-block counts that differ are not supported")
            return int(value[0])
        return int(value)

    max_len = int(cfg.get("motion_max_seq_length", 32))
    mid = bool(cfg.get("use_motion_mid_block", True))
    return dict(
        block_out_channels=tuple(cfg.get("block_out_channels", (320, 640, 1280, 1280))),
        layers_per_block=single(cfg.get("motion_layers_per_block", 2), "motion_layers_per_block"),
        use_mid_block=mid,
        num_attention_heads=single(cfg.get("motion_num_attention_heads", 8), "motion_num_attention_heads"),
        num_transformer_blocks=single(
            cfg.get("motion_transformer_layers_per_block", 1), "motion_transformer_layers_per_block"
        ),
        max_frames=max_len,
        norm_num_groups=int(cfg.get("motion_norm_num_groups", 32)),
        version="v2" if mid else ("v1" if max_len == 24 else "v3"),
    )


def config_from_diffusers(cfg: dict) -> MotionModuleConfig:
    """Our config for a diffusers MotionAdapter's config.json (SD1.x or SDXL: `block_out_channels` says which)."""
    return MotionModuleConfig.from_dict(_diffusers_config_to_ours(cfg))


def _ours_to_diffusers_config(config: MotionModuleConfig) -> dict:
    from diffusers import __version__ as diffusers_version

    return {
        "_class_name": "MotionAdapter",
        "_diffusers_version": diffusers_version,
        "block_out_channels": list(config.block_out_channels),
        "motion_layers_per_block": config.layers_per_block,
        "motion_transformer_layers_per_block": config.num_transformer_blocks,
        "motion_mid_block_layers_per_block": 1,
        "motion_transformer_layers_per_mid_block": config.num_transformer_blocks,
        "motion_num_attention_heads": config.num_attention_heads,
        "motion_norm_num_groups": config.norm_num_groups,
        "motion_max_seq_length": config.max_frames,
        "use_motion_mid_block": config.use_mid_block,
        "conv_in_channels": None,
    }


def read_motion_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], MotionModuleConfig]:
    """(official-layout tensors, config) from any supported motion-module source."""
    path = resolve_path(path, "motion module")
    if path.is_dir():
        config_file = path / "config.json"
        weights = next((path / name for name in DIFFUSERS_WEIGHTS if (path / name).is_file()), None)
        if not config_file.is_file() or weights is None:
            raise InputNotFound(
                f"{path} is not a diffusers MotionAdapter folder "
                f"(needs config.json and {' or '.join(DIFFUSERS_WEIGHTS)})"
            )
        cfg = json.loads(config_file.read_text())
        if cfg.get("_class_name", "MotionAdapter") != "MotionAdapter":
            raise InputError(f"{path} holds a {cfg['_class_name']} (config.json), not a diffusers MotionAdapter")
        raw, _ = read_state_dict(weights)
        found = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}
        sd = diffusers_to_official(found)
        check_known_layout(sd, str(weights), found)
        _check_finite(sd, weights)
        return sd, config_from_diffusers(cfg)
    raw, metadata = read_state_dict(path)
    sd, embedded = _unwrap(raw)
    _check_finite(sd, path)
    if CONFIG_KEY in metadata:
        embedded = json.loads(metadata[CONFIG_KEY])
    known = set(MotionModuleConfig.__dataclass_fields__)
    overrides = {k: v for k, v in (embedded or {}).items() if k in known}
    found = sd
    if is_hotshot(sd):
        sd = hotshot_to_official(sd)
    elif any(".attn1." in k for k in sd):  # a diffusers-named single file
        sd = diffusers_to_official(sd)
    check_known_layout(sd, str(path), found)
    return sd, infer_config(sd, overrides)


def _check_finite(sd: dict[str, torch.Tensor], path: Path) -> None:
    """Weights holding NaN or inf (a diverged training run) would draw black videos: refuse them."""
    counts = non_finite(sd)
    if counts:
        total = sum(v.numel() for v in sd.values() if v.is_floating_point())
        raise InputError(
            f"{path}: {sum(counts.values())} of {total} motion-module weight values are not finite (NaN or inf), "
            f"in {len(counts)} tensors (e.g. {next(iter(counts))}); the file is broken (a diverged training run?)"
        )


def stored_dtype(sd: dict[str, torch.Tensor]) -> torch.dtype:
    """The floating-point dtype holding most of the weights' values (float32 where there are none)."""
    sizes: dict[torch.dtype, int] = {}
    for value in sd.values():
        if value.is_floating_point():
            sizes[value.dtype] = sizes.get(value.dtype, 0) + value.numel()
    return max(sizes, key=sizes.__getitem__) if sizes else torch.float32


def load_motion_modules(path: str | os.PathLike) -> MotionModules:
    """Load a motion module: official .ckpt/.safetensors, a diffusers MotionAdapter folder, or a hub id."""
    return _build(path, *read_motion_file(path))


def _build(path: str | os.PathLike, sd: dict[str, torch.Tensor], config: MotionModuleConfig) -> MotionModules:
    try:
        return build_from_state_dict(sd, config)
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None


def is_adapter_folder(folder: Path) -> bool:
    """Whether `folder` holds nothing but a MotionAdapter's files (an earlier export that a new one may replace)."""
    return all(entry.name in ("config.json", *DIFFUSERS_WEIGHTS) for entry in folder.iterdir())


def save_motion_modules(modules: MotionModules, path: str | os.PathLike, layout: str = "official") -> Path:
    """Save in the official single-file layout (.safetensors/.ckpt, config embedded) or as a diffusers folder (the
    transformer design only: diffusers' MotionAdapter has no temporal convolution)."""
    path = Path(path)
    sd = motion_state_dict(modules)
    if layout == "official":
        return write_state_dict(path, sd, {CONFIG_KEY: json.dumps(modules.config.to_dict())})
    if layout == "diffusers":
        if modules.config.design != "transformer":
            raise InputError(
                f"a {modules.config.design} motion module has no diffusers MotionAdapter layout (diffusers has no "
                "such module); save it in the official layout (.safetensors or .ckpt)"
            )

        def write(folder: Path) -> None:
            write_state_dict(folder / DIFFUSERS_WEIGHTS[0], official_to_diffusers(sd))
            (folder / "config.json").write_text(json.dumps(_ours_to_diffusers_config(modules.config), indent=2))

        return write_folder_atomic(path, write, replaceable=is_adapter_folder)
    raise InputError(f"unknown motion module layout {layout!r}; expected 'official' or 'diffusers'")


def convert_motion_module(src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Convert between layouts; a destination with a weights extension is official, anything else a folder.

    The weights keep the source's dtype (fp16 in, fp16 out) unless `dtype` names another.
    """
    sd, config = read_motion_file(src)
    modules = _build(src, sd, config).to(dtype or stored_dtype(sd))
    dst = Path(dst)
    layout = "official" if dst.suffix in (".safetensors", ".ckpt", ".pt", ".pth") else "diffusers"
    return save_motion_modules(modules, dst, layout)
