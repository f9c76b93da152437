"""The entries of a prompt config: official AnimateDiff entries (SparseCtrl's `controlnet_*` keys included), prompt
travel's, and the keys of the features `generate` has (video-to-video, ControlNet, IP-Adapter, more image LoRAs, the
scheduler, context windows and loops, FreeNoise, motion scale, FreeInit), each checked with the nearest known key named.

The layouts are described in `prompt_config`, which runs the entries.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from animatediff.entry_ip_keys import check_ip_keys
from animatediff.entry_lora_keys import check_lora_keys
from animatediff.entry_sampling_keys import check_sampling_keys
from animatediff.entry_text_keys import check_text_keys, check_travel_keys
from animatediff.errors import InputError, InputNotFound
from animatediff.pipeline.control_inputs import check_control_keys
from animatediff.pipeline.gradual_latent import check_gradual_latent_keys
from animatediff.pipeline.hires import check_hires_keys
from animatediff.pipeline.image_start import check_image_start_key
from animatediff.pipeline.keyframe_control_inputs import check_keyframe_control_keys
from animatediff.pipeline.pag import DEFAULT_LAYERS, check_pag_keys
from animatediff.pipeline.prompt_travel import held_prompt_map
from animatediff.pipeline.reference import check_reference_keys
from animatediff.pipeline.sparse_ctrl_entries import check_sparse_ctrl_keys
from animatediff.pipeline.video_start import check_video_keys
from animatediff.prompt_travel_config import DOCUMENT_DEFAULTS, read_travel_keys
from animatediff.region_entries import check_region_keys

# Keys the official configs carry that are spelled differently or only informative here.
ALIASES = {"path": "dreambooth_path", "domain_lora_scale": "adapter_lora_scale"}
IGNORED = {"random_seed"}  # written by the official script into saved configs; re-running one draws `seed` again


@dataclass
class PromptEntry:
    """One entry of a prompt config: a model and the prompts to draw with it."""

    prompt: list[str]
    """Prompts, one video each."""
    motion_module: list[str]
    """Motion-module files; v1 configs list several, and every prompt is drawn with each."""
    n_prompt: list[str] = field(default_factory=lambda: [""])
    """Negative prompts: one per prompt, or a single one reused for all."""
    seed: list[int] = field(default_factory=lambda: [-1])
    """Seeds: one per prompt, or a single one reused; -1 draws a random seed (recorded in config.yaml)."""
    dreambooth_path: str = ""
    """Single-file SD1.x checkpoint applied over the base; empty for the base itself."""
    lora_model_path: str = ""
    """Image LoRA merged after the checkpoint; empty for none."""
    lora_alpha: float = 0.8
    """Scale of the image LoRA (the official default)."""
    lora_configs: list[dict] = field(default_factory=list)
    """More image LoRAs as [{path, alpha}] (alpha 1.0 unless given), merged after lora_model_path in this order, as
    generate's --lora PATH:ALPHA."""
    motion_module_lora_configs: list[dict] = field(default_factory=list)
    """MotionLoRAs as [{path, alpha}], merged into the motion modules."""
    adapter_lora_path: str = ""
    """v3 domain adapter LoRA; empty for none."""
    adapter_lora_scale: float = 1.0
    """Scale of the domain adapter."""
    inference_config: str = ""
    """Official inference YAML; its `noise_scheduler_kwargs` build the DDIM scheduler when the file exists."""
    scheduler: str = ""
    """Scheduler by name, as generate's --scheduler (`sampling.make_scheduler`: ddim, euler, euler-ancestral,
    dpm++-2m, …, lcm, tcd); empty: the preset's, else inference_config's DDIM, else ddim. Give it or inference_config,
    not both."""
    preset: str = ""
    """Few-step sampling by name, as generate's --preset (`sampling.presets`: lightning-4step, animatelcm, …): its
    scheduler (instead of inference_config's DDIM) and spacing, and its steps and guidance unless given here."""
    timestep_spacing: str = ""
    """leading, trailing or linspace, as generate's --timestep-spacing; empty: the preset's, else the scheduler's."""
    tcd_gamma: float | None = None
    """The tcd scheduler's gamma in [0, 1] (generate's --tcd-gamma); unset: the preset's, else 0.3."""
    ddim_eta: float | None = None
    """The ddim scheduler's eta in [0, 1] (generate's --ddim-eta); unset: 0, deterministic."""
    steps: int = 25
    guidance_scale: float | None = None
    """Classifier-free guidance; unset takes the base's own (its animatediff.json, else 7.5)."""
    guidance_scale_steps: dict[float, float] | None = None
    """{fraction of the steps: guidance scale} (generate's --guidance-scale-steps)."""
    freeu: dict[str, float] | None = None
    """FreeU's {b1, b2, s1, s2} (generate's --freeu; "b1=…,b2=…,s1=…,s2=…" too); None: off."""
    W: int | None = None
    H: int | None = None
    L: int | None = None
    """Width, height, frames; unset takes the run's defaults."""
    context_length: int | None = None
    """Sliding context windows of this many frames (static, pyramid-fused unless the keys below say otherwise), as
    generate's --context-length; unset: none."""
    context_overlap: int = 4
    """Frames neighbouring context windows share (generate's --context-overlap), 0 … context_length − 1; only with
    context_length."""
    context_stride: int | None = None
    """The uniform schedule's largest stride (generate's --context-stride); unset: 1."""
    context_schedule: str | None = None
    """static, uniform or looped (generate's --context-schedule); unset: static, or looped with `loop`."""
    context_fuse: str | None = None
    """How overlapping windows are blended: flat, pyramid, overlap-linear or relative (generate's --context-fuse);
    unset: pyramid."""
    closed_loop: bool = False
    """Windows that wrap past the last frame to the first (generate's --closed-loop)."""
    loop: bool = False
    """A seamless loop (generate's --loop): looped windows of context_length frames, or of 16 (half the clip, for
    16 frames or fewer)."""
    free_noise: bool = False
    """FreeNoise (generate's --free-noise): rescheduled noise, and the motion modules attending in windows of
    context_length frames (16 unless given) 4 frames apart, instead of sliding context windows."""
    motion_scale: float | dict[str, float] | None = None
    """How much of what the motion modules add is kept (generate's --motion-scale), ≥ 0, or one per block group
    ({down, mid, up}); unset: 1."""
    motion_scale_steps: dict[float, float | dict[str, float]] | None = None
    """{fraction of the steps: motion scale} from which the scale changes (generate's --motion-scale-steps)."""
    motion_attention_scale: float = 1.0
    """The motion modules' attention keys multiplied by it (generate's --motion-attention-scale), ≥ 0."""
    motion_attention_scale_steps: dict[float, float] | None = None
    """{fraction of the steps: motion attention scale} (generate's --motion-attention-scale-steps)."""
    motion_attention_mask: str = ""
    """A mask image or folder whose grey multiplies motion_attention_scale per pixel (--motion-attention-mask)."""
    free_init_iters: int | None = None
    """FreeInit with its default settings, sampling this many times in all (generate's --free-init); unset: none.
    With a video, only at strength 1."""
    base: str = ""
    """v1 configs: a base-model folder overriding the run's --base when not empty."""
    prompt_map: dict[int, str] = field(default_factory=dict)
    """Prompt travel: frame → prompt keyframes (string keys too, as prompt-travel's JSON writes them), drawn as one
    video instead of `prompt`."""
    head_prompt: str = ""
    """Prompt travel: text put before every keyframe's prompt (joined by ",")."""
    tail_prompt: str = ""
    """Prompt travel: text put after every keyframe's prompt (joined by ",")."""
    prompt_interpolation: str = "linear"
    """Prompt travel: "linear", "slerp" or "none" between keyframes."""
    prompt_fixed_ratio: float = 0.0
    """Prompt travel: the part of each gap between keyframes the earlier prompt is held before the text travels on,
    0 … 1 (prompt-travel's key, `pipeline.prompt_travel.held_keyframes`); 0: travel across the whole gap."""
    prompt_travel_loop: bool = False
    """Prompt travel: the keyframes go round, the frames after the last travelling on towards the first, as
    animatediff-cli-prompt-travel's do (its documents' default; `pipeline.prompt_travel`)."""
    clip_skip: int = 1
    """The text encoder layer the prompts are taken from, as generate's --clip-skip (1: the trained one)."""
    prompt_weighting: str = "none"
    """none, a1111 or comfy (A1111's or ComfyUI's weights syntax), as generate's --prompt-weighting."""
    long_prompts: str = "truncate"
    """truncate or chunks (A1111's 75-token chunks), as generate's --long-prompts."""
    prompt_editing: bool = False
    """A1111's [from:to:when] and [a|b] read as prompt editing, as generate's --prompt-editing."""
    prompt_and: bool = False
    """A1111's composable prompts (AND, each part at its weight), as generate's --prompt-and."""
    prompt_2: str = ""
    """SDXL: what the second text encoder reads for every prompt (generate's --prompt-2); empty: the prompt."""
    n_prompt_2: str = ""
    """SDXL: the second text encoder's negative prompt (--negative-prompt-2); empty: the negative prompt."""
    pag_scale: float | None = None
    """Perturbed-attention guidance's scale (generate's --pag-scale); None: off."""
    pag_adaptive_scale: float = 0.0
    """PAG's adaptive scale (--pag-adaptive-scale)."""
    pag_layers: list[str] = field(default_factory=lambda: list(DEFAULT_LAYERS))
    """The self-attention layers PAG perturbs (--pag-layer)."""
    vae_path: str = ""
    """A VAE replacing the base's and dreambooth_path's, as generate's --vae; empty for none."""
    embeddings: list[str] = field(default_factory=list)
    """Textual-inversion embedding files, each written in the prompts by its file name, as generate's --embedding."""
    lora_dir: list[str] = field(default_factory=list)
    """Folders where the prompts' `<lora:NAME:WEIGHT>` tags find their files, as generate's --lora-dir."""
    fps: float | None = None
    """Frames per second of this entry's videos; unset: the run's --fps."""
    output_format: str = "gif"
    """This entry's video files: gif, mp4 or webp (the grid stays a GIF)."""
    video: str = ""
    """Video-to-video: the input every prompt starts from (video file, GIF, folder of frames); empty for none."""
    strength: float | None = None
    """Video-to-video: how much of the input is re-drawn, in (0, 1]; unset: 0.8."""
    video_stride: int = 1
    """Video-to-video: take every Nth input frame."""
    video_mask: str = ""
    """Video inpainting: a mask image or folder (white: drawn anew; black: the video kept); empty for none."""
    init_image: str | dict = ""
    """A start from a picture (the A1111 extension's img2vid, `pipeline/image_start.py`): its path, or {first, last,
    latent_power, latent_scale, latent_power_last, latent_scale_last}; empty for none. Read as a mapping."""
    hires_scale: float | None = None
    """Hires fix: the clip drawn again this many times larger (1-4) from its upscaled frames (`pipeline/hires.py`)."""
    hires_strength: float = 0.5
    """Hires fix: how much of the upscaled frames is drawn again, in (0, 1]."""
    hires_steps: int | None = None
    """Hires fix: the second pass's steps; unset: the entry's."""
    hires_upscaler: str = "pixel"
    """Hires fix: what is upscaled, the frames (pixel) or the latents (latent, latent-bicubic, latent-nearest)."""
    gradual_latent: dict | None = None
    """Gradual latent hires fix, {scale: {fraction: scale}, reverse_steps, noise_add_count} (prompt-travel's
    `gradual_latent_hires_fix_map`; `sampling/gradual_latent.py`); unset: off."""
    reference: dict | None = None
    """Reference-only, {image, attention, adain, attention_weight, adain_weight, style_fidelity, scale_pattern}
    (prompt-travel's `controlnet_ref`; `pipeline/reference.py`); unset: off."""
    ip_adapter: str = ""
    """IP-Adapter weights (diffusers' layout) for an image prompt beside the text; empty for none."""
    ip_image: list[str] | dict[int, list[str]] = field(default_factory=list)
    """IP-Adapter: the image prompt, a path or several seen together; or keyframes, {frame: path(s)} or a folder of
    images named by their frame (`pipeline/ip_keyframes.py`)."""
    ip_fixed_ratio: float = 0.0
    """IP-Adapter keyframes: the part of each gap the earlier image is held before its embedding travels on."""
    ip_scale: float | dict | None = None
    """IP-Adapter: weight of the image prompt, ≥ 0, or per UNet block in diffusers' layer-wise form
    (`pipeline/ip_scales.py`); unset: 1 (as trained)."""
    image_encoder: str = ""
    """IP-Adapter: its CLIP image encoder folder or hub id; empty: the image_encoder folder beside ip_adapter."""
    ip_mask: str = ""
    """IP-Adapter: where its image prompt acts (white), a mask image or a folder of masks named by their frame; empty:
    everywhere."""
    ip_adapters: list[dict] = field(default_factory=list)
    """Further image prompts drawn at once, each {ip_adapter, ip_image, ip_scale, image_encoder, ip_fixed_ratio,
    ip_mask} (`entry_ip_keys`)."""
    regions: list[dict] = field(default_factory=list)
    """Regional prompts, each {mask, prompt or prompt_map, …} drawn where its mask is white (`region_entries`)."""
    keep_background: bool = False
    """With regions and a video: the video kept where no region is (prompt-travel's background `is_init_img`)."""
    controlnet: list[str] = field(default_factory=list)
    """ControlNets, 'MODEL[:SCALE]' each (a diffusers folder, hub id or .pth/.safetensors file); empty for none."""
    control_video: list[str] = field(default_factory=list)
    """ControlNet: each one's control video (video file, GIF, WebP, .npy or a folder of frames), in order."""
    control_frames: list[str] = field(default_factory=list)
    """ControlNet: control images as folders of frames, in order (beside control_video: by position, "" between)."""
    control_from_video: list[str] = field(default_factory=list)
    """ControlNet: how control images are made of the videos, canny or none; one for all or one each; unset: none."""
    control_start: list[float] = field(default_factory=list)
    """ControlNet: fraction of the steps after which it acts; one for all or one each; unset: 0."""
    control_end: list[float] = field(default_factory=list)
    """ControlNet: fraction of the steps after which it stops; one for all or one each; unset: 1."""
    guess_mode: bool = False
    """ControlNet guess mode: the ControlNets see only the prompted half of the guided batch."""
    keyframe_controlnets: list[dict] = field(default_factory=list)
    """ControlNets with images at keyframes, spread to their neighbours (`pipeline.keyframe_control_inputs`)."""
    controlnet_path: str = ""
    """SparseCtrl, as the official v3 configs name it: the encoder (official file, diffusers folder or hub id)."""
    controlnet_config: str = ""
    """SparseCtrl: the official inference YAML of the encoder (`configs/inference/sparsectrl/*.yaml`); its
    `controlnet_additional_kwargs` say what the file does not (motion heads, positions); empty: read off the file."""
    controlnet_images: list[str] = field(default_factory=list)
    """SparseCtrl: the keyframe images (pictures for the RGB encoder, scribbles for the scribble one)."""
    controlnet_image_indexs: list[int] = field(default_factory=lambda: [0])
    """SparseCtrl: the frame of each keyframe image, in order (-1: the last frame), the official key's spelling."""
    normalize_condition_images: bool = False
    """SparseCtrl: keyframe images made gray and stretched to [0, 1] first (the official option, for scribbles)."""
    controlnet_use_simplified_condition_embedding: bool | None = None
    """SparseCtrl: overrides the config's `use_simplified_condition_embedding` (whether images go in as latents)."""
    name: str = ""
    """The entry's key in mapping-form configs, else its index."""

    @property
    def prompts(self) -> list[str | dict[int, str]]:
        """What each video draws: a prompt, or the keyframes of a prompt map with head and tail joined."""
        return self.clip_prompts(self.L)

    def clip_prompts(self, num_frames: int | None) -> list[str | dict[int, str]]:
        """`prompts` for a clip of `num_frames`: under `prompt_travel_loop` the last keyframe is held towards the
        clip's end as the others are towards the next (`held_keyframes`)."""
        if self.prompt_map:
            loop_length = num_frames if self.prompt_travel_loop else None
            return [held_prompt_map(self.prompt_map, self.head_prompt, self.tail_prompt, self.prompt_fixed_ratio,
                                    loop_length)]  # fmt: skip
        return list(self.prompt)

    @property
    def seeds(self) -> list[int]:
        return self.seed * len(self.prompts) if len(self.seed) == 1 else self.seed

    @property
    def negative_prompts(self) -> list[str]:
        return self.n_prompt * len(self.prompts) if len(self.n_prompt) == 1 else self.n_prompt


def _strings(value: object, key: str, where: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InputError(f"{where}: {key} must be a string or a list of strings, got {value!r}")
    return values


def parse_entry(raw: dict, where: str, name: str = "") -> PromptEntry:
    """Validate one raw entry: unknown keys are named with the nearest known one."""
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping of settings, got {type(raw).__name__}")
    known = {f.name for f in fields(PromptEntry)} - {"name"}
    values: dict = {}
    for key, value in read_travel_keys(raw, where).items():
        if key in IGNORED:
            continue
        if key == "tensor_interpolation_slerp":  # prompt-travel's switch; an explicit prompt_interpolation wins
            if not isinstance(value, bool):
                raise InputError(f"{where}: tensor_interpolation_slerp must be true or false, got {value!r}")
            values.setdefault("prompt_interpolation", "slerp" if value else "linear")
            continue
        target = ALIASES.get(key, key)
        if target not in known:
            close = difflib.get_close_matches(str(key), sorted(known | set(ALIASES)), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
            raise InputError(f"{where}: unknown key {key!r}{hint}")
        if target in values and key in ALIASES:
            continue  # the official spelling wins over its alias
        values[target] = value
    check_travel_keys(values, where)  # prompt travel's
    _check_output_keys(values, where)
    check_video_keys(values, where)  # video-to-video's
    check_image_start_key(values, where)  # a start from a picture
    check_hires_keys(values, where)
    check_gradual_latent_keys(values, where)
    check_region_keys(values, where)
    check_ip_keys(values, where)  # IP-Adapters'
    check_control_keys(values, where)  # ControlNet's
    check_keyframe_control_keys(values, where)  # keyframe ControlNets (prompt-travel's controlnet_map)
    check_sparse_ctrl_keys(values, where)  # SparseCtrl's (the official controlnet_* keys)
    check_reference_keys(values, where)  # reference-only (prompt-travel's controlnet_ref)
    check_sampling_keys(values, where)  # scheduler, context windows, FreeInit (generate's flags)
    for key in ("prompt", "motion_module"):
        if not values.get(key) and not (key == "prompt" and values.get("prompt_map")):
            raise InputError(f"{where}: {key!r} is required")
    values["prompt"] = _strings(values.get("prompt", []), "prompt", where)
    values["motion_module"] = _strings(values["motion_module"], "motion_module", where)
    values["n_prompt"] = _strings(values.get("n_prompt", [""]), "n_prompt", where) or [""]
    seed = values.get("seed", [-1])
    seeds = [seed] if isinstance(seed, int) else seed
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise InputError(f"{where}: seed must be an integer or a list of integers (-1 = random), got {seed!r}")
    values["seed"] = seeds or [-1]
    check_lora_keys(values, where)  # lora_configs (with their ramps), motion_module_lora_configs
    for key in ("dreambooth_path", "lora_model_path", "adapter_lora_path", "inference_config", "base"):
        values[key] = values.get(key) or ""
    for key in ("steps", "W", "H", "L"):
        if values.get(key) is not None and (not isinstance(values[key], int) or isinstance(values[key], bool)):
            raise InputError(f"{where}: {key} must be an integer, got {values[key]!r}")
    for key in ("lora_alpha", "adapter_lora_scale", "guidance_scale"):
        if key in values and not isinstance(values[key], (int, float)):
            raise InputError(f"{where}: {key} must be a number, got {values[key]!r}")
    entry = PromptEntry(**values, name=name)
    for label, items in (("n_prompt", entry.n_prompt), ("seed", entry.seed)):
        if entry.prompt_map and len(items) != 1:
            raise InputError(f"{where}: {len(items)} {label} values for a prompt_map, which draws one video (give 1)")
        if len(items) not in (1, len(entry.prompt)):
            raise InputError(
                f"{where}: {len(items)} {label} values for {len(entry.prompt)} prompts (give 1 or one each)"
            )
    return entry


def _check_output_keys(values: dict, where: str) -> None:
    """The text keys (`entry_text_keys`), PAG's, vae_path, fps and output_format, checked in place."""
    check_text_keys(values, where)
    check_pag_keys(values, where)
    if not isinstance(values.get("vae_path") or "", str):
        raise InputError(f"{where}: vae_path must be a path, got {values['vae_path']!r}")
    values["vae_path"] = values.get("vae_path") or ""
    fps = values.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
        raise InputError(f"{where}: fps must be a positive number, got {fps!r}")
    if values.get("output_format", "gif") not in ("gif", "mp4", "webp"):
        raise InputError(f"{where}: output_format {values['output_format']!r}: choose one of gif, mp4, webp")


def load_prompt_config(path: str | os.PathLike) -> tuple[list[PromptEntry], object]:
    """(entries, the raw YAML document) of an official prompt config."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"prompt config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML ({err})") from None
    if single_entry(raw):  # an animatediff-cli-prompt-travel config: one entry, its `name` naming it, its defaults
        entry = {**DOCUMENT_DEFAULTS, **{k: v for k, v in raw.items() if k != "name"}}
        entries = [parse_entry(entry, path.name, str(raw.get("name", path.stem)))]
    elif isinstance(raw, list):
        entries = [parse_entry(e, f"{path.name} entry {i}", str(i)) for i, e in enumerate(raw)]
    elif isinstance(raw, dict):
        entries = [parse_entry(e, f"{path.name} entry {k!r}", str(k)) for k, e in raw.items()]
    else:
        raise InputError(f"{path}: expected a list (or mapping) of entries, got {type(raw).__name__}")
    if not entries:
        raise InputError(f"{path}: no entries")
    return entries, raw


def single_entry(raw: object) -> bool:
    """Whether a config document is one animatediff-cli-prompt-travel entry (a mapping with prompt_map at its top)."""
    return isinstance(raw, dict) and "prompt_map" in raw and "motion_module" in raw
