"""Official AnimateDiff prompt configs (`configs/prompts/*.yaml`), run unchanged.

Layout (github.com/guoyww/AnimateDiff, `scripts/animate.py`): a YAML list of entries — or, in the older v1 files,
a mapping of named entries — each with the model to load (dreambooth_path, lora_model_path + lora_alpha,
motion_module, motion_module_lora_configs [{path, alpha}], adapter_lora_path + adapter_lora_scale,
inference_config) and what to draw (prompt list, n_prompt list with one entry reused, seed: int, list or -1 =
random, steps, guidance_scale, optional W, H, L).

Prompt travel, in animatediff-cli-prompt-travel's form (github.com/s9roll7/animatediff-cli-prompt-travel): an entry
with `prompt_map` {frame: prompt} (and optional `head_prompt` / `tail_prompt` joined to every keyframe's prompt by
",", `prompt_interpolation` or prompt-travel's `tensor_interpolation_slerp`) draws one video whose text embeddings
travel between the keyframes (`pipeline.prompt_travel`); it takes one n_prompt and one seed. A prompt-travel config
file itself (one mapping with `prompt_map` and `motion_module` at its top) is read as one such entry.

Output, as the official script writes it: `<root>/<config stem>-<time>/sample/<i>-<first ten prompt words>.gif`
per video (i counts over the whole run), a grid `sample.gif` of all videos, and `config.yaml` with the seeds used
(`random_seed` per entry). Each file is written under a temporary name and renamed, and `config.yaml` is
rewritten after every video, so a run that is interrupted leaves whole GIFs and the seeds that drew them.
"""

from __future__ import annotations

import copy
import difflib
import os
import random
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

import yaml

from animatediff.errors import InputError, InputNotFound
from animatediff.io.atomic import write_atomic
from animatediff.model_cache import ModelCache, PipelineSpec
from animatediff.pipeline.prompt_travel import INTERPOLATIONS, PromptTravel, compose, keyframes
from animatediff.sampling import for_model

# Keys the official configs carry that are spelled differently or only informative here.
ALIASES = {"path": "dreambooth_path", "domain_lora_scale": "adapter_lora_scale"}
IGNORED = {"random_seed"}  # written by the official script into saved configs; re-running one draws `seed` again
UNSUPPORTED_PREFIXES = ("controlnet_",)  # SparseCtrl entries
PROMPT_TRAVEL_ONLY = {"lora_map", "motion_lora_map", "ip_adapter_map", "img2img_map", "region_map", "upscale_config",
                      "stylize_config", "lcm_map", "apply_lcm_lora", "gradual_latent_hires_fix_map", "clip_skip",
                      "prompt_fixed_ratio", "scheduler", "context_schedule", "vae_path", "compile", "output",
                      "unet_batch_size", "is_single_prompt_mode"}  # fmt: skip


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
    motion_module_lora_configs: list[dict] = field(default_factory=list)
    """MotionLoRAs as [{path, alpha}], merged into the motion modules."""
    adapter_lora_path: str = ""
    """v3 domain adapter LoRA; empty for none."""
    adapter_lora_scale: float = 1.0
    """Scale of the domain adapter."""
    inference_config: str = ""
    """Official inference YAML; its `noise_scheduler_kwargs` build the DDIM scheduler when the file exists."""
    steps: int = 25
    guidance_scale: float | None = None
    """Classifier-free guidance; unset takes the base's own (its animatediff.json, else 7.5)."""
    W: int | None = None
    H: int | None = None
    L: int | None = None
    """Width, height, frames; unset takes the run's defaults."""
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
    name: str = ""
    """The entry's key in mapping-form configs, else its index."""

    @property
    def prompts(self) -> list[str | dict[int, str]]:
        """What each video draws: a prompt, or the keyframes of a prompt map with head and tail joined."""
        if self.prompt_map:
            return [{k: compose(p, self.head_prompt, self.tail_prompt) for k, p in self.prompt_map.items()}]
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
    for key, value in raw.items():
        if key in IGNORED:
            continue
        if str(key).startswith(UNSUPPORTED_PREFIXES):
            raise InputError(f"{where}: {key!r}: SparseCtrl (controlnet_*) entries are not supported by `run`")
        if key in PROMPT_TRAVEL_ONLY:
            raise InputError(f"{where}: animatediff-cli-prompt-travel's {key!r} is not supported by `run`; remove it")
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
    _parse_prompt_travel(values, where)
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
    loras = values.get("motion_module_lora_configs") or []
    if not isinstance(loras, list) or not all(isinstance(c, dict) and "path" in c for c in loras):
        raise InputError(f"{where}: motion_module_lora_configs must be a list of {{path, alpha}} mappings")
    for c in loras:
        for key in set(c) - {"path", "alpha"}:
            close = difflib.get_close_matches(str(key), ["path", "alpha"], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; expected path and alpha"
            raise InputError(f"{where}: motion_module_lora_configs: unknown key {key!r}{hint}")
        if not isinstance(c.get("alpha", 1.0), (int, float)):
            raise InputError(f"{where}: motion_module_lora_configs alpha must be a number, got {c['alpha']!r}")
    values["motion_module_lora_configs"] = loras
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


def _parse_prompt_travel(values: dict, where: str) -> None:
    """Check an entry's prompt-travel keys in place: prompt_map (instead of prompt), head/tail text, interpolation."""
    if "prompt_map" in values:
        if values.get("prompt"):
            raise InputError(
                f"{where}: give 'prompt' (one video each) or 'prompt_map' (one travelling video), not both"
            )
        values["prompt_map"] = keyframes(values["prompt_map"], f"{where}: prompt_map")
    for key in ("head_prompt", "tail_prompt"):
        if not isinstance(values.get(key) or "", str):
            raise InputError(f"{where}: {key} must be a string, got {values[key]!r}")
        values[key] = values.get(key) or ""
    mode = values.get("prompt_interpolation", "linear")
    if mode not in INTERPOLATIONS:
        raise InputError(f"{where}: prompt_interpolation {mode!r}: choose one of {', '.join(INTERPOLATIONS)}")


def load_prompt_config(path: str | os.PathLike) -> tuple[list[PromptEntry], object]:
    """(entries, the raw YAML document) of an official prompt config."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"prompt config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML ({err})") from None
    if _single_entry(raw):  # an animatediff-cli-prompt-travel config: one entry, its `name` naming it
        entry = {k: v for k, v in raw.items() if k != "name"}
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


def _single_entry(raw: object) -> bool:
    return isinstance(raw, dict) and "prompt_map" in raw and "motion_module" in raw


def _check_prompt_maps(entries: list[PromptEntry], frames: int, config_name: str) -> None:
    """Every prompt_map keyframe lies in its entry's clip (L, else the run's frames), before anything loads."""
    for entry in entries:
        if entry.prompt_map:
            try:
                PromptTravel(entry.prompt_map, num_frames=entry.L or frames)
            except InputError as err:
                raise InputError(f"{config_name} entry {entry.name}: prompt_map: {err}") from None


def _local(path: str, config_dir: Path) -> str:
    """Paths are relative to the working directory (as in the official repo), else to the config's folder."""
    if not path or Path(path).expanduser().exists() or not (config_dir / path).exists():
        return path
    return str(config_dir / path)


def _check_local_paths(entries: list[PromptEntry], here: Path, config_name: str) -> None:
    """Fail before loading anything when a file is missing from a folder that exists locally.

    Paths whose folder does not exist locally may be hub references (`owner/repo/file`) and are left to the hub
    client, which names them clearly when offline.
    """
    for entry in entries:
        paths = [("dreambooth_path", entry.dreambooth_path), ("lora_model_path", entry.lora_model_path),
                 ("adapter_lora_path", entry.adapter_lora_path), ("base", entry.base)]  # fmt: skip
        paths += [("motion_module", m) for m in entry.motion_module]
        paths += [("motion_module_lora_configs", str(c["path"])) for c in entry.motion_module_lora_configs]
        for key, path in paths:
            if not path or Path(_local(path, here)).expanduser().exists():
                continue
            if any((root / path).parent.is_dir() for root in (Path.cwd(), here)):
                raise InputNotFound(
                    f"{config_name} entry {entry.name}: {key} {path!r} not found (looked in {Path.cwd()} and {here})"
                )


def _scheduler(inference_config: str):  # noqa: ANN202
    from diffusers import DDIMScheduler

    from animatediff.sampling import make_scheduler

    if not inference_config or not Path(inference_config).is_file():
        return make_scheduler("ddim")  # the official inference configs' DDIM settings
    cfg = yaml.safe_load(Path(inference_config).read_text()) or {}
    kwargs = cfg.get("noise_scheduler_kwargs")
    return DDIMScheduler(**kwargs) if kwargs else make_scheduler("ddim")


def sample_name(prompt: str | dict[int, str]) -> str:
    """The official file stem: the first ten words of the prompt (a prompt map's first keyframe's) joined by '-',
    slashes removed."""
    if isinstance(prompt, dict):
        prompt = next(iter(prompt.values()))
    return "-".join(prompt.replace("/", "").split(" ")[:10])


def run_prompt_config(
    config: str | os.PathLike,
    base: str | os.PathLike,
    output_root: str | os.PathLike = "samples",
    cache: ModelCache | None = None,
    width: int | None = None,
    height: int | None = None,
    frames: int = 16,
    fps: float = 8.0,
    progress: bool = True,
) -> Path:
    """Draw every prompt of every entry; returns the output folder."""
    from animatediff.io.outputs import check_output_folder
    from animatediff.io.video import check_finite, grid, save_video

    config = Path(config)
    entries, raw = load_prompt_config(config)
    here = config.parent
    _check_local_paths(entries, here, config.name)
    _check_prompt_maps(entries, frames, config.name)
    check_output_folder(output_root, "output folder")
    cache = cache or ModelCache()
    out = Path(output_root) / f"{config.stem}-{datetime.now().strftime('%Y-%m-%dT%H-%M-%S')}"
    videos, used_seeds, index = [], [], 0
    for entry in entries:
        entry_seeds: list[int] = []
        loras = [("image", _local(entry.lora_model_path, here), float(entry.lora_alpha))] * bool(entry.lora_model_path)
        if entry.adapter_lora_path:
            loras.append(("adapter", _local(entry.adapter_lora_path, here), float(entry.adapter_lora_scale)))
        for cfg in entry.motion_module_lora_configs:
            loras.append(("motion", _local(str(cfg["path"]), here), float(cfg.get("alpha", 1.0))))
        for motion_module in entry.motion_module:
            spec = PipelineSpec(
                base=_local(entry.base, here) or os.fspath(base),
                motion_module=_local(motion_module, here),
                dreambooth=_local(entry.dreambooth_path, here) or None,
                loras=tuple(loras),
            )
            pipe = cache.pipeline(spec)
            pipe.scheduler = for_model(_scheduler(_local(entry.inference_config, here)), pipe.noise_settings)
            for prompt, negative, seed in zip(entry.prompts, entry.negative_prompts, entry.seeds):
                seed = seed if seed != -1 else random.SystemRandom().randrange(2**63)
                entry_seeds.append(seed)
                video = pipe(
                    prompt, negative, num_frames=entry.L or frames, height=entry.H or height, width=entry.W or width,
                    num_inference_steps=entry.steps, guidance_scale=entry.guidance_scale, seed=seed, progress=progress,
                    prompt_interpolation=entry.prompt_interpolation,
                )[0]  # fmt: skip
                path = out / "sample" / f"{index}-{sample_name(prompt)}.gif"
                check_finite(video, path)
                save_video(video, path, fps)
                _write_config(out / "config.yaml", raw, [*used_seeds, entry_seeds])
                videos.append(video)
                index += 1
        used_seeds.append(entry_seeds)
    if len({v.shape for v in videos}) == 1:
        save_video(grid(videos, columns=min(4, len(videos))), out / "sample.gif", fps)
    _write_config(out / "config.yaml", raw, used_seeds)
    return out


def _write_config(path: Path, raw: object, used: list[list[int]]) -> None:
    """The config as given, each entry with the seeds drawn so far (`random_seed`), written atomically."""
    text = yaml.safe_dump(_with_seeds(copy.deepcopy(raw), used), sort_keys=False)
    write_atomic(path, lambda tmp: tmp.write_text(text))


def _with_seeds(raw: object, used: list[list[int]]) -> object:
    items = [raw] if _single_entry(raw) else raw if isinstance(raw, list) else list(raw.values())
    for entry, seeds in zip(items, used):
        entry["random_seed"] = seeds
    return raw


__all__ = ["PromptEntry", "load_prompt_config", "parse_entry", "run_prompt_config", "sample_name"]
