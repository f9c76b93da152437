"""What the page's form asks for: checked field by field (one line naming the field), then turned into the model
cache's `PipelineSpec` and the pipeline call's arguments (`ui/run_config.py` writes the `animatediff run` entry that
draws the same animation).

Defaults are `animatediff generate`'s. Models are catalog ids (`ui.catalog`), never paths.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from animatediff.errors import InputError
from animatediff.pipeline.free_u import parse_free_u
from animatediff.pipeline.prompt_travel import INTERPOLATIONS
from animatediff.prompt_chunks import LONG_PROMPTS
from animatediff.prompt_weights import WEIGHTINGS
from animatediff.sampling.presets import Sampling, preset_names, resolve_sampling
from animatediff.sampling.schedulers import SCHEDULERS
from animatediff.ui.catalog import Catalog
from animatediff.ui.controls import ControlUnit, parse_controls, stored_units
from animatediff.ui.fields import choice, number, scaled
from animatediff.ui.image_prompt import parse_ip_adapter
from animatediff.ui.job_models import spec
from animatediff.ui.reference_fields import parse_reference
from animatediff.ui.step_fractions import gradual_section, guidance_keyframes, motion_scale_keyframes

if TYPE_CHECKING:
    from animatediff.sampling.context import ContextSchedule

FORMATS = ("gif", "mp4", "webp")


@dataclass
class Settings:
    """One generation request, as the form gives it."""

    prompt: str = ""
    negative_prompt: str = ""
    prompt_2: str = ""
    """SDXL: what its second text encoder reads instead of the prompt, as `generate --prompt-2`; empty: the prompt."""
    negative_prompt_2: str = ""
    """SDXL: the second text encoder's negative prompt (`--negative-prompt-2`); empty: the negative prompt."""
    frames: int = 16
    width: int | None = None
    """None: the base's native size."""
    height: int | None = None
    steps: int = 25
    guidance_scale: float | None = None
    """None: the base's own."""
    guidance_scale_steps: str = ""
    """The guidance scale from fractions of the steps on, "0.6:1", as `generate --guidance-scale-steps`."""
    freeu: str = ""
    """FreeU's factors, "b1=1.5,b2=1.6,s1=0.9,s2=0.2[,form=comfy-v2]", as `generate --freeu`; empty: off."""
    seed: int | None = None
    """None: drawn when the request is queued (then recorded here)."""
    output_format: str = "gif"
    fps: float = 8.0
    scheduler: str = "ddim"
    ddim_eta: float | None = None
    """The ddim scheduler's eta (fresh noise at each step); None: 0, deterministic."""
    preset: str = ""
    """A few-step recipe (`sampling.presets`): its timestep spacing and betas; the page fills in its scheduler, steps
    and guidance, which the form then sends as given."""
    base: str = "world:base"
    dreambooth: str = ""
    vae: str = ""
    """A VAE in place of the base's (and the checkpoint's); empty: theirs."""
    loras: list[tuple[str, float]] = field(default_factory=list)
    lora_regions: list[list[int | str]] = field(default_factory=list)
    """Per LoRA, the regions it acts in (indices from 0 and "background"; empty: everywhere), as a run entry's
    `lora_configs` item's `regions` (`ui/controls.py`)."""
    motion_module: str = "world:motion_module"
    motion_loras: list[tuple[str, float]] = field(default_factory=list)
    adapter: str = ""
    adapter_scale: float = 1.0
    context_length: int | None = None
    context_overlap: int = 4
    context_schedule: str = ""
    """static, uniform or looped; empty: static (looped with `loop`), as `generate`'s --context-schedule."""
    context_fuse: str = ""
    """flat, pyramid, overlap-linear or relative; empty: pyramid."""
    context_stride: int | None = None
    """The uniform schedule's largest stride; None: 1."""
    closed_loop: bool = False
    """Windows that wrap past the last frame to the first."""
    loop: bool = False
    """A seamless loop: looped windows of `context_length` frames, or `generate --loop`'s default windows."""
    free_noise: bool = False
    """FreeNoise instead of sliding windows: the motion modules attend in windows of `context_length` frames (16
    unless given) 4 apart, as `generate --free-noise`."""
    motion_scale: float | None = None
    """None: 1, as trained."""
    motion_scale_steps: str = ""
    """The motion scale from fractions of the steps on, "0.6:0.5, 0.8:0", as `generate --motion-scale-steps`."""
    motion_attention_scale: float | None = None
    """The motion attention's key multiplier, as `generate --motion-attention-scale`; None: 1."""
    motion_attention_mask: str = ""
    """An uploaded mask whose grey multiplies it per pixel, as `generate --motion-attention-mask`."""
    prompt_map: dict[int, str] = field(default_factory=dict)
    """Prompt travel: frame → prompt; `prompt` is then put before each keyframe's text."""
    prompt_interpolation: str = "linear"
    prompt_travel_loop: bool = False
    """Prompt travel's keyframes go round, as `generate --prompt-travel-loop`."""
    clip_skip: int = 1
    """The text encoder layer the prompt is taken from, as `generate --clip-skip` (1: the trained one)."""
    prompt_weighting: str = "none"
    """none, a1111 or comfy: A1111's or ComfyUI's weights syntax read as weights, as `generate --prompt-weighting`."""
    long_prompts: str = "truncate"
    """truncate, or chunks: a prompt past 75 tokens read in A1111's chunks, as `generate --long-prompts`."""
    prompt_editing: bool = False
    prompt_and: bool = False
    """A1111's composable prompts (AND), as `generate --prompt-and`."""
    """A1111's [from:to:when] and [a|b] read as prompt editing, as `generate --prompt-editing`."""
    free_init_iters: int | None = None
    pag_scale: float | None = None
    """Perturbed-attention guidance's scale, as `generate --pag-scale` (its default layers); None: off."""
    video: str = ""
    """Video-to-video: an upload's id (`ui.studio.Uploads`)."""
    video_mask: str = ""
    """Video inpainting: an upload's id, the mask (white: drawn anew)."""
    strength: float = 0.8
    init_image: str = ""
    """A start from a picture (the A1111 extension's img2vid, `generate --init-image`): an upload's id."""
    latent_scale: float = 32.0
    """The picture start's latent scale, as `generate --latent-scale` (and `--latent-scale-last`)."""
    last_frame: str = ""
    """The picture start's last frame, as `generate --last-frame`: an upload's id; empty: none."""
    hires_scale: float | None = None
    """The hires fix's upscale, as `generate --hires-scale`; None: off."""
    hires_strength: float = 0.5
    hires_upscaler: str = "pixel"
    gradual_latent: str = ""
    """The gradual latent hires fix's "FRACTION:SCALE, …", as `generate --gradual-latent`; empty: off."""
    controlnets: list[ControlUnit] = field(default_factory=list)
    """ControlNets in order, each with its control video (`ui/controls.py`)."""
    guess_mode: bool = False
    """The ControlNets see only the conditional half of the guided batch."""
    sparsectrl: str = ""
    keyframes: list[tuple[int, str]] = field(default_factory=list)
    """SparseCtrl: (frame, an upload's id) of each keyframe image; frame -1 is the last."""
    ip_adapter: str = ""
    ip_image: str = ""
    """IP-Adapter: an upload's id, the image prompt (at frame 0 when there are keyframe images)."""
    ip_keyframes: list[tuple[int, str]] = field(default_factory=list)
    """IP-Adapter: (frame, an upload's id) of images at keyframes, interpolated between (`ui/controls.py`)."""
    ip_scale: float = 1.0
    ip_scale_blocks: str = ""
    """IP-Adapter: its scale per UNet block, diffusers' layer-wise mapping as YAML (`pipeline/ip_scales.py`), in place
    of `ip_scale`; empty: `ip_scale` everywhere."""
    ip_mask: str = ""
    """IP-Adapter: an upload's id, the mask where its image prompt acts (white); empty: everywhere."""
    image_encoder: str = ""
    """Empty: the `image_encoder/` folder beside the IP-Adapter's file."""
    ip_adapter_2: str = ""
    """A second image prompt drawn at once (e.g. a style beside a subject): its IP-Adapter, with its image encoder
    beside its file."""
    ip_image_2: str = ""
    """The second IP-Adapter's image prompt: an upload's id."""
    ip_scale_2: float = 1.0
    ip_mask_2: str = ""
    """The second image prompt's mask: an upload's id (white: where it acts); empty: everywhere."""
    reference: str = ""
    """Reference-only: an upload's id, the picture (`ui/reference_fields.py`); with its mode and style fidelity."""
    reference_mode: str = "only"
    reference_fidelity: float = 0.5
    regions: list[tuple[str, str, str]] = field(default_factory=list)
    """Regional prompts: (an upload's id, the mask; the prompt; an upload's id, its own image prompt, or "") of each,
    in order (`ui/controls.py`)."""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["loras"] = [{"id": i, "scale": s} for i, s in self.loras]
        data["motion_loras"] = [{"id": i, "scale": s} for i, s in self.motion_loras]
        data["prompt_map"] = [{"frame": k, "prompt": v} for k, v in sorted(self.prompt_map.items())]
        data["keyframes"] = [{"frame": k, "image": v} for k, v in self.keyframes]
        data["regions"] = [{"mask": m, "prompt": p, "image": i} for m, p, i in self.regions]
        data["ip_keyframes"] = [{"frame": k, "image": v} for k, v in self.ip_keyframes]
        return data


def parse(raw: dict, catalog: Catalog) -> Settings:
    """The form's JSON checked: every field in range, every model one the catalog lists."""
    if not isinstance(raw, dict):
        raise InputError("expected the form's fields as a JSON object")
    known = set(Settings.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r}")
    s = Settings()
    s.prompt = str(raw.get("prompt") or "").strip()
    s.negative_prompt = str(raw.get("negative_prompt") or "")
    s.prompt_2 = str(raw.get("prompt_2") or "").strip()
    s.negative_prompt_2 = str(raw.get("negative_prompt_2") or "")
    s.prompt_map = _prompt_map(raw.get("prompt_map"))
    if not s.prompt and not s.prompt_map:
        raise InputError("prompt: empty (say what to animate)")
    for key in ("frames", "steps", "context_overlap", "clip_skip"):
        setattr(s, key, number(raw, key, int, getattr(s, key)))
    for key in ("width", "height", "seed", "context_length", "context_stride", "free_init_iters"):
        setattr(s, key, number(raw, key, int, None))
    s.guidance_scale = number(raw, "guidance_scale", float, None)
    s.guidance_scale_steps = str(raw.get("guidance_scale_steps") or "").strip()
    guidance_keyframes(s)  # checked as generate checks them
    s.freeu = str(raw.get("freeu") or "").strip()
    if s.freeu:
        parse_free_u(s.freeu)
    s.pag_scale = number(raw, "pag_scale", float, None, "PAG scale")
    s.fps = number(raw, "fps", float, s.fps)
    s.strength = number(raw, "strength", float, s.strength)
    s.adapter_scale = number(raw, "adapter_scale", float, 1.0, "adapter scale")
    s.motion_scale = number(raw, "motion_scale", float, None, "motion scale")
    s.motion_scale_steps = str(raw.get("motion_scale_steps") or "").strip()
    motion_scale_keyframes(s)  # checked as generate checks them
    s.motion_attention_scale = number(raw, "motion_attention_scale", float, None, "motion attention scale")
    s.motion_attention_mask = str(raw.get("motion_attention_mask") or "")
    s.hires_scale = number(raw, "hires_scale", float, None, "hires scale")
    s.hires_strength = number(raw, "hires_strength", float, s.hires_strength, "hires strength")
    for key in ("loop", "free_noise", "closed_loop", "prompt_editing", "prompt_travel_loop", "prompt_and"):
        if not isinstance(raw.get(key, False), bool):
            raise InputError(f"{key.replace('_', ' ')}: expected true or false, got {raw[key]!r}")
        setattr(s, key, raw.get(key, False))
    if s.loop and s.free_noise:
        raise InputError("free noise: FreeNoise replaces the sliding windows a loop needs; choose one")
    s.output_format = choice(raw.get("output_format", "gif"), FORMATS, "output format")
    s.scheduler = choice(raw.get("scheduler", "ddim"), list(SCHEDULERS), "scheduler")
    s.preset = choice(raw.get("preset") or "", ["", *preset_names()], "preset")
    s.ddim_eta = number(raw, "ddim_eta", float, None, "DDIM eta")
    sampling_of(s)  # a preset with this scheduler: checked as generate checks it
    s.prompt_interpolation = choice(raw.get("prompt_interpolation", "linear"), INTERPOLATIONS, "interpolation")
    s.prompt_weighting = choice(raw.get("prompt_weighting") or "none", WEIGHTINGS, "prompt weighting")
    s.long_prompts = choice(raw.get("long_prompts") or "truncate", LONG_PROMPTS, "long prompts")
    for key in ("width", "height"):
        if getattr(s, key) is not None and getattr(s, key) % 8:
            raise InputError(f"{key}: {getattr(s, key)} is not a multiple of 8")
    if s.free_noise:
        from animatediff.entry_sampling_keys import entry_free_noise_of

        entry_free_noise_of(s.context_length)  # FreeNoise's window and stride checked as generate checks them
    elif s.context_length is not None and s.context_overlap >= s.context_length:
        raise InputError(f"context overlap: {s.context_overlap} must be less than the context length")
    _parse_windows(raw, s)
    if any(frame >= s.frames for frame in s.prompt_map):
        raise InputError(f"prompt travel: keyframe {max(s.prompt_map)} is past the last frame ({s.frames - 1})")
    s.base = str(raw.get("base") or s.base)
    s.motion_module = str(raw.get("motion_module") or s.motion_module)
    s.dreambooth = str(raw.get("dreambooth") or "")
    s.vae = str(raw.get("vae") or "")
    s.adapter = str(raw.get("adapter") or "")
    s.loras = scaled(raw.get("loras"), "LoRA")
    s.motion_loras = scaled(raw.get("motion_loras"), "MotionLoRA")
    s.video, s.video_mask = str(raw.get("video") or ""), str(raw.get("video_mask") or "")
    if s.video_mask and not s.video:
        raise InputError("video mask: upload the video it masks")
    s.init_image = str(raw.get("init_image") or "")
    s.latent_scale = number(raw, "latent_scale", float, s.latent_scale, "latent scale")
    s.last_frame = str(raw.get("last_frame") or "")
    if s.init_image and s.video:
        raise InputError("picture to start from: give a video or a picture to start from, not both")
    if s.last_frame and not s.init_image:
        raise InputError("last frame: upload the picture to start from too")
    parse_controls(raw, s, catalog)  # and the IP-Adapter's keyframe images
    parse_ip_adapter(raw, s, catalog)
    parse_reference(raw, s)
    if s.hires_scale is not None:
        from animatediff.pipeline.hires import HiresFix

        s.hires_upscaler = str(raw.get("hires_upscaler") or "pixel")
        HiresFix(s.hires_scale, s.hires_strength, s.steps, s.hires_upscaler)  # as generate says what is wrong
    s.gradual_latent = str(raw.get("gradual_latent") or "").strip()
    gradual_section(s)  # checked as a run checks its entry's
    spec(s, catalog)  # every model is one the scan listed
    return s


def _parse_windows(raw: dict, s: Settings) -> None:
    """The sliding windows' schedule and fuse, checked with the rest of the windows as a run checks them."""
    from animatediff.sampling.context import FUSE_METHODS, SCHEDULES

    s.context_schedule = choice(raw.get("context_schedule") or "", ["", *SCHEDULES], "context schedule")
    s.context_fuse = choice(raw.get("context_fuse") or "", ["", *FUSE_METHODS], "context fuse")
    context_of(s)


def _prompt_map(raw: object) -> dict[int, str]:
    if raw in (None, ""):
        return {}
    if not isinstance(raw, list):
        raise InputError("prompt travel: expected a list of {frame, prompt} rows")
    keyframes: dict[int, str] = {}
    for row in raw:
        if not isinstance(row, dict) or not str(row.get("prompt") or "").strip():
            continue  # an empty row of the table
        frame = number(row, "frame", int, None, "prompt travel frame")
        if frame is None:
            raise InputError("prompt travel: every keyframe needs a frame number ≥ 0")
        keyframes[frame] = str(row["prompt"]).strip()
    return keyframes


def with_seed(s: Settings) -> Settings:
    """The settings with a seed: the given one, else a fresh random one (recorded, shown and reproducible)."""
    if s.seed is None:
        s.seed = random.SystemRandom().randrange(2**32)
    return s


def sampling_of(s: Settings) -> Sampling:
    """The run's sampling: the preset's, with the form's scheduler, steps, guidance and DDIM eta taking over, as
    `generate --preset P --scheduler S --steps N --guidance-scale G --ddim-eta E` resolves it."""
    return resolve_sampling(s.preset or None, s.scheduler, s.steps, s.guidance_scale, ddim_eta=s.ddim_eta)


def context_of(s: Settings) -> ContextSchedule | None:
    """The run's sliding windows, by the rule generate and run use (`requested_windows`): looped for `loop`, of
    `context_length` with the schedule, fuse, stride and closed loop given, else none (and none under FreeNoise,
    whose windows replace them)."""
    from animatediff.sampling.context import requested_windows

    return requested_windows(
        s.frames,
        s.context_length,
        s.context_overlap,
        s.context_stride,
        s.context_schedule or None,
        s.context_fuse or None,
        s.closed_loop,
        s.loop,
        s.free_noise,
        name=lambda key: key.replace("_", " "),
    )


def prompt_of(s: Settings) -> str | dict[int, str]:
    """What the pipeline draws: the prompt, or the keyframes with the prompt put before each one's text; A1111's
    `<lora:NAME:WEIGHT>` tags taken out (`job_models.tagged_loras_of` merges them)."""
    from animatediff.prompt_loras import prompt_without_lora_tags

    if not s.prompt_map:
        return prompt_without_lora_tags(s.prompt)
    from animatediff.pipeline.prompt_travel import compose

    keyframes = {frame: compose(text, s.prompt, "") for frame, text in sorted(s.prompt_map.items())}
    return prompt_without_lora_tags(keyframes)


def output_stem(s: Settings, number: int) -> str:
    """`<number>-<first words of the prompt>`, safe as a file name."""
    words = "".join(c if c.isalnum() or c in " -" else " " for c in (s.prompt or next(iter(s.prompt_map.values()))))
    return f"{number:04d}-" + "-".join(words.split()[:8])[:60]


def read_settings(path: Path) -> Settings:
    """Settings as a history entry stored them (`Settings.as_json`)."""
    import json

    data = json.loads(path.read_text())
    s = Settings(**{k: v for k, v in data.items() if k in Settings.__dataclass_fields__})
    s.loras = [(d["id"], d["scale"]) for d in data.get("loras", [])]
    s.motion_loras = [(d["id"], d["scale"]) for d in data.get("motion_loras", [])]
    s.prompt_map = {int(d["frame"]): d["prompt"] for d in data.get("prompt_map", [])}
    s.keyframes = [(int(d["frame"]), d["image"]) for d in data.get("keyframes", [])]
    s.regions = [(d["mask"], d["prompt"], d.get("image", "")) for d in data.get("regions", [])]
    s.ip_keyframes = [(int(d["frame"]), d["image"]) for d in data.get("ip_keyframes", [])]
    s.controlnets = stored_units(data)
    return s
