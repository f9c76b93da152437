"""A base model: where it comes from, how it was trained, and what it samples at.

A base is a Stable Diffusion 1.x or SDXL model in the diffusers folder layout (unet/, vae/, text_encoder/,
tokenizer/, scheduler/; SDXL adds text_encoder_2/ and tokenizer_2/), given as a folder or a hub id, optionally with a
single-file checkpoint (a CivitAI DreamBooth) laid over its weights and a separate VAE in place of its own. Its
family ('sd1' or 'sdxl') is read from its files (`base_family`); SD2, an SDXL refiner, SD3 and Flux are refused in
one line naming what was found.
`read_traits` reads, from the folder's config files alone, what everything built on a base needs to know: how it
was trained (prediction type, zero-terminal-SNR, the betas of its schedule), its family, and what it samples at
(native size, the multiple every size must be of, default guidance). `load_base` loads its weights. The pipeline,
the model cache, the trainer, the world and the benchmarks all go through these two.

A base folder may carry `animatediff.json`, what it states about itself: `guidance_scale` (the guidance it samples
at where none is asked for, e.g. 3.0 for a small base that over-drives at the usual 7.5; else 7.5), `vocabulary`
(the words its text encoder was trained on: prompt words outside it get a warning) and `size_range` (the smallest
and largest pixel side it draws well: other sizes get a warning; else half to twice its native size).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from animatediff.errors import InputError, InputNotFound
from animatediff.hub import check_reference, resolve_path

DEFAULT_GUIDANCE_SCALE = 7.5
"""Classifier-free guidance of a base that states none: the official repo's, diffusers' and the UIs' default."""
STATEMENT_FILE = "animatediff.json"
"""The file in a base folder that states what the base is (see the module docstring)."""
STATEMENT_KEYS = ("guidance_scale", "vocabulary", "size_range")
"""What that file may state."""
PREDICTION_TYPES = ("epsilon", "v_prediction")
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer")
SDXL_COMPONENTS = ("text_encoder_2", "tokenizer_2")
FAMILIES = {"sd1": "SD1.x", "sdxl": "SDXL"}
"""The base families we animate, by name → how messages spell them."""


@dataclass(frozen=True)
class BaseTraits:
    """What a base was trained with and samples at, read from its config files (no weights loaded)."""

    prediction_type: str
    """What its UNet predicts: 'epsilon' or 'v_prediction'."""
    zero_snr: bool
    """Trained on betas rescaled to zero terminal SNR (Lin et al. 2024): sampled from the last timestep on."""
    scheduler_config: dict
    """Its scheduler/scheduler_config.json ({} when it has none): the betas it was trained on."""
    vae_scale_factor: int
    """Pixels per latent cell along each side (8 for SD)."""
    size_multiple: int
    """Pixel sizes must be multiples of this: the VAE factor times the UNet's total downsampling (64 for SD)."""
    native_size: int
    """The side in pixels it was trained at (512 for SD1.5)."""
    guidance_scale: float
    """Classifier-free guidance a call samples with when it names none."""
    vocabulary: frozenset[str] | None = None
    """The words its text encoder was trained on, lower-case; None where the base does not say."""
    size_range: tuple[int, int] = (0, 0)
    """The smallest and largest pixel side it draws well; (0, 0): half to twice `native_size`."""
    family: str = "sd1"
    """'sd1' (one CLIP text encoder, 4 UNet levels) or 'sdxl' (two text encoders, pooled text and size
    conditioning, 3 UNet levels)."""
    zero_empty_negative: bool = False
    """SDXL's `force_zeros_for_empty_prompt` (model_index.json): with no negative prompt given, the unconditional
    text is zeros rather than the empty prompt's embedding."""

    def __post_init__(self) -> None:
        if self.size_range == (0, 0):
            object.__setattr__(self, "size_range", (self.native_size // 2, self.native_size * 2))

    def prompt_warnings(
        self, prompts: list[str], height: int, width: int, added: frozenset[str] = frozenset()
    ) -> list[str]:
        """One line for each thing a call asks that this base does not do well: words it never saw (which it
        cannot draw) other than the `added` ones (loaded embeddings' words), and sizes outside its `size_range`."""
        lines = []
        if self.vocabulary is not None:
            words = {w for p in prompts for w in re.findall(r"[a-z]+", p.lower())}
            unknown = sorted(words - self.vocabulary - {w.lower() for w in added})
            if unknown:
                lines.append(
                    f"this model never saw the words {', '.join(unknown)} in training and cannot draw them "
                    f"(it knows: {', '.join(sorted(self.vocabulary))})"
                )
        low, high = self.size_range
        if not (low <= height <= high and low <= width <= high):
            drawn = f"{low}×{low}" if low == high else f"sides of {low} to {high} px"
            lines.append(f"{width}×{height} px: this model draws {drawn}; other sizes come out smeared or repeated")
        return lines

    def noise_scheduler(self) -> DDPMScheduler:
        """A DDPM scheduler on the base's own training schedule (its betas, prediction type and zero-SNR): what
        training the image layers over it (DreamBooth, LoRA) adds noise with."""
        if not self.scheduler_config:
            raise InputNotFound(
                "the base has no scheduler/scheduler_config.json: its training noise schedule is unknown"
            )
        return DDPMScheduler.from_config(
            self.scheduler_config, prediction_type=self.prediction_type, rescale_betas_zero_snr=self.zero_snr
        )


@dataclass
class BaseModel:
    """A loaded base: the parts an animation needs, and its traits."""

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    traits: BaseTraits
    folder: Path
    """The diffusers folder it was loaded from (for a hub id, the local snapshot)."""
    tokenizer_2: CLIPTokenizer | None = None
    """SDXL's second tokenizer and text encoder (OpenCLIP ViT-bigG, with its pooled projection); None for SD1.x."""
    text_encoder_2: CLIPTextModelWithProjection | None = None


def base_folder(path_or_id: str | os.PathLike) -> Path:
    """The local folder of a base given as a folder or a hub id; an InputError unless it has the SD layout."""
    folder = resolve_path(path_or_id, "base model")
    if not folder.is_dir():
        raise InputError(
            f"{folder} is a file, not a diffusers Stable Diffusion folder (unet/, vae/, text_encoder/ ...)"
        )
    base_family(folder)  # SD2, a refiner, SD3 or Flux: said in one line
    missing = [sub for sub in COMPONENTS if not (folder / sub).is_dir()]
    if missing:
        raise InputNotFound(f"{folder} is not a diffusers Stable Diffusion folder: missing {', '.join(missing)}/")
    return folder


def base_family(folder: str | os.PathLike) -> str:
    """'sd1' or 'sdxl', from a diffusers folder's layout and configs (no weights read); other families, an
    InputError that names what the folder holds."""
    folder = Path(folder)
    if (folder / "transformer").is_dir() and not (folder / "unet").is_dir():
        index = folder / "model_index.json"
        name = read_json(index, "model_index.json").get("_class_name", "") if index.is_file() else ""
        kind = "Flux" if "Flux" in name else "SD3" if "StableDiffusion3" in name else "a diffusion transformer"
        raise InputError(f"{folder} holds {kind} (a transformer, not a UNet); AnimateDiff animates SD1.x and SDXL")
    has_first, has_second = (folder / "text_encoder").is_dir(), (folder / "text_encoder_2").is_dir()
    if has_second and not has_first:
        raise InputError(f"{folder} is an SDXL refiner (only text_encoder_2/); use an SDXL base model")
    unet_config = folder / "unet" / "config.json"
    if not unet_config.is_file():
        return "sdxl" if has_second else "sd1"
    unet = read_json(unet_config, "unet/config.json of the base model")
    if has_second or unet.get("addition_embed_type") == "text_time":
        return "sdxl"
    if unet.get("cross_attention_dim") == 1024:
        raise InputError(
            f"{folder} is a Stable Diffusion 2.x base (1024-wide text); AnimateDiff animates SD1.x and SDXL"
        )
    return "sd1"


def read_json(path: Path, what: str) -> dict:
    """A JSON object from a config file, with one clear line when it is missing or not JSON."""
    if not path.is_file():
        raise InputNotFound(f"{what} not found: {path}")
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_component_config(folder: Path, component: str) -> dict:
    """A component's config.json (unet, vae, text_encoder), read without loading any weights."""
    return read_json(Path(folder) / component / "config.json", f"{component}/config.json of the base model")


def size_multiple(unet_config: dict, vae_config: dict) -> int:
    """The multiple every pixel size must be of: VAE factor × UNet downsampling."""
    return vae_scale_factor(vae_config) * 2 ** (len(unet_config["block_out_channels"]) - 1)


def vae_scale_factor(vae_config: dict) -> int:
    return 2 ** (len(vae_config["block_out_channels"]) - 1)


def read_statement(folder: Path) -> dict:
    """What a base folder states about itself in animatediff.json ({} when it states nothing), checked."""
    path = Path(folder) / STATEMENT_FILE
    if not path.is_file():
        return {}
    values = read_json(path, STATEMENT_FILE)
    unknown = sorted(set(values) - set(STATEMENT_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown keys {unknown}; it may state {', '.join(STATEMENT_KEYS)}")
    guidance = values.get("guidance_scale", DEFAULT_GUIDANCE_SCALE)
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or guidance < 0:
        raise InputError(f"{path}: guidance_scale must be a non-negative number, got {guidance!r}")
    words = values.get("vocabulary", [])
    if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
        raise InputError(f"{path}: vocabulary must be a list of words, got {words!r}")
    sizes = values.get("size_range", [1, 1])
    if not (isinstance(sizes, list) and len(sizes) == 2 and all(isinstance(v, int) and v > 0 for v in sizes)):
        raise InputError(f"{path}: size_range must be [smallest, largest] pixel sides, got {sizes!r}")
    return values


def read_traits(folder: Path, prediction_type: str | None = None, zero_snr: bool | None = None) -> BaseTraits:
    """How the base in `folder` was trained and what it samples at. `prediction_type` and `zero_snr` override its
    scheduler config, for a checkpoint that came without one."""
    folder = Path(folder)
    schedule_path = folder / "scheduler" / "scheduler_config.json"
    schedule = read_json(schedule_path, "scheduler config") if schedule_path.is_file() else {}
    prediction = prediction_type or schedule.get("prediction_type") or "epsilon"
    if prediction not in PREDICTION_TYPES:
        raise InputError(f"unknown prediction type {prediction!r}; choose one of: {', '.join(PREDICTION_TYPES)}")
    unet_config = read_component_config(folder, "unet")
    vae_config = read_component_config(folder, "vae")
    factor = vae_scale_factor(vae_config)
    stated = read_statement(folder)
    vocabulary = stated.get("vocabulary")
    family = base_family(folder)
    index = folder / "model_index.json"
    pipeline_config = read_json(index, "model_index.json") if index.is_file() else {}
    return BaseTraits(
        prediction_type=prediction,
        zero_snr=bool(schedule.get("rescale_betas_zero_snr", False) if zero_snr is None else zero_snr),
        scheduler_config=schedule,
        vae_scale_factor=factor,
        size_multiple=size_multiple(unet_config, vae_config),
        native_size=int(unet_config["sample_size"]) * factor,
        guidance_scale=float(stated.get("guidance_scale", DEFAULT_GUIDANCE_SCALE)),
        vocabulary=None if vocabulary is None else frozenset(w.lower() for w in vocabulary),
        size_range=tuple(stated.get("size_range", (0, 0))),
        family=family,
        zero_empty_negative=family == "sdxl" and bool(pipeline_config.get("force_zeros_for_empty_prompt", True)),
    )


def load_base(
    path_or_id: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    dreambooth: str | os.PathLike | None = None,
    prediction_type: str | None = None,
    zero_snr: bool | None = None,
    vae: str | os.PathLike | None = None,
) -> BaseModel:
    """Load a base: a diffusers SD1.x or SDXL folder or its hub id; `dreambooth`, a single-file checkpoint (LDM
    layout, SGM for SDXL) of the same family, replaces its UNet, VAE and text-encoder weights (both for SDXL);
    `vae`, a VAE file, folder or hub id (`formats.vae_file.load_vae`), then replaces the VAE, a checkpoint's baked
    one included, keeping the base's VAE config (its scaling factor). The traits, a .safetensors checkpoint's
    family, and that `vae` is a local path or can be a hub id are checked before any weight loads."""
    folder = base_folder(path_or_id)
    traits = read_traits(folder, prediction_type, zero_snr)
    if vae:
        check_reference(vae, "VAE")
    if dreambooth:  # a file of the other family (or SD2, or a refiner): said from its header, before weights load
        from animatediff.formats.single_file_sdxl import check_single_file

        check_single_file(dreambooth, traits.family)
    kwargs = {"local_files_only": True}
    if traits.family == "sdxl":
        missing = [sub for sub in SDXL_COMPONENTS if not (folder / sub).is_dir()]
        if missing:
            raise InputNotFound(f"{folder} is not a diffusers SDXL folder: missing {', '.join(missing)}/")
    base = BaseModel(
        tokenizer=CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", **kwargs),
        text_encoder=CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", torch_dtype=dtype, **kwargs),
        vae=AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, **kwargs),
        unet=UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype, **kwargs),
        traits=traits,
        folder=folder,
    )
    if traits.family == "sdxl":
        base.tokenizer_2 = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer_2", **kwargs)
        base.text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(
            folder, subfolder="text_encoder_2", torch_dtype=dtype, **kwargs
        )
    if dreambooth and traits.family == "sdxl":
        from animatediff.formats.single_file_sdxl import load_sdxl_single_file_weights

        load_sdxl_single_file_weights(dreambooth, base)
    elif dreambooth:
        from animatediff.formats.single_file import load_single_file_weights

        load_single_file_weights(dreambooth, base.unet, base.vae, base.text_encoder)
    if vae:
        from animatediff.formats.vae_file import load_vae

        base.vae = load_vae(vae, base.vae)
    return base
