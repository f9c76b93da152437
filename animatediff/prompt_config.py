"""Official AnimateDiff prompt configs (`configs/prompts/*.yaml`), run unchanged.

Layout (github.com/guoyww/AnimateDiff, `scripts/animate.py`): a YAML list of entries — or, in the older v1 files,
a mapping of named entries — each with the model to load (dreambooth_path, lora_model_path + lora_alpha,
motion_module, motion_module_lora_configs [{path, alpha}], adapter_lora_path + adapter_lora_scale,
inference_config) and what to draw (prompt list, n_prompt list with one entry reused, seed: int, list or -1 =
random, steps, guidance_scale, optional W, H, L).

Keys beyond the official ones, named after `generate`'s flags so that an entry can say all a `generate` call says
(`entry_sampling_keys`): `lora_configs` [{path, alpha}] (--lora: more image LoRAs, alpha 1.0 unless given, merged after
lora_model_path in order; an item's `ramp` ramps its scale over the steps, `pipeline.lora_ramp`; its `regions` and
`scale` confine it to regions at a scale keyframed by frame, `pipeline.region_loras`), `scheduler` (--scheduler: a
`sampling.make_scheduler` name, instead of inference_config's DDIM; not beside an inference_config), `context_length`
and `context_overlap` (--context-length, --context-overlap: static sliding windows, overlap 4 unless given),
`context_stride`, `context_schedule`, `context_fuse` and `closed_loop` (--context-stride, --context-schedule,
--context-fuse, --closed-loop), `loop` (--loop: looped windows, of context_length frames or --loop's default),
`free_noise` (--free-noise), `motion_scale` (--motion-scale), `motion_scale_steps` (--motion-scale-steps: {fraction of
the steps: scale}), `motion_attention_scale`, `motion_attention_scale_steps` and `motion_attention_mask`
(--motion-attention-scale, --motion-attention-scale-steps, --motion-attention-mask), `guidance_scale_steps`
(--guidance-scale-steps: {fraction of the steps: guidance scale}), `freeu` (--freeu: {b1, b2, s1, s2}),
`free_init_iters` (--free-init: FreeInit with its default settings), `preset` (--preset: a few-step recipe,
`sampling.presets`, its scheduler instead of inference_config's DDIM, its steps and guidance unless the entry gives
them), `timestep_spacing` (--timestep-spacing), `tcd_gamma` (--tcd-gamma), `ddim_eta` (--ddim-eta), and `pag_scale`,
`pag_adaptive_scale` and `pag_layers` (--pag-scale, --pag-adaptive-scale, --pag-layer: perturbed-attention guidance).
Bad values fail in one line while the config is read, before any model loads.

Prompt travel, in animatediff-cli-prompt-travel's form (github.com/s9roll7/animatediff-cli-prompt-travel): an entry
with `prompt_map` {frame: prompt} (and optional `head_prompt` / `tail_prompt` joined to every keyframe's prompt by
",", `prompt_interpolation` or prompt-travel's `tensor_interpolation_slerp`, `prompt_fixed_ratio`) draws one video
whose text embeddings travel between the keyframes (`pipeline.prompt_travel`); it takes one n_prompt and one seed. A
prompt-travel config file itself (one mapping with `prompt_map` and `motion_module` at its top) is read as one such
entry, with prompt-travel's defaults; its other keys (lora_map, motion_lora_map, clip_skip, vae_path, output, and
the sections it leaves off) are read as `prompt_travel_config` says.

`clip_skip`, `prompt_weighting`, `long_prompts`, `prompt_editing`, `embeddings` (a list of textual-inversion
files), `lora_dir` (where the prompts' A1111 `<lora:NAME:WEIGHT>` tags find their files) and `vae_path` (generate's
--clip-skip, --prompt-weighting, --long-prompts, --prompt-editing, --embedding, --lora-dir and --vae), `fps` and
`output_format` (gif, mp4, webp) apply to any entry; `prompt_2` and `n_prompt_2` (--prompt-2, --negative-prompt-2)
to an SDXL entry's prompts.

SparseCtrl, as the official v3 configs give it: `controlnet_path`, `controlnet_config`, `controlnet_images`,
`controlnet_image_indexs`, `normalize_condition_images` (`pipeline.sparse_ctrl_entries`).

An image prompt (IP-Adapter, `pipeline.ip_adapter`): `ip_adapter` (weights), `ip_image` (a path or a list),
optional `ip_scale` and `image_encoder`, as `generate`'s --ip-adapter, --ip-image, --ip-scale, --image-encoder;
`ip_image` as keyframes ({frame: path(s)}, or a folder of images named by their frame) with `ip_fixed_ratio`
(`pipeline.ip_keyframes`); `ip_adapters`, a list of further image prompts at once, each a mapping of those keys
(`entry_ip_keys`).

Regional prompts (`pipeline.regions`): `regions`, a list of {mask, prompt or prompt_map, head_prompt, tail_prompt,
prompt_fixed_ratio, ip_image, ip_fixed_ratio} (or {mask, keep_video: true}, with `keep_background`, keeping the
entry's video), as `generate`'s --region (`region_entries`). Video inpainting: `video_mask` (`pipeline.video_mask`).
The hires fix: `hires_scale`, `hires_strength`, `hires_steps`, `hires_upscaler` (`pipeline.hires`); the gradual latent
hires fix: `gradual_latent` {scale, reverse_steps, noise_add_count} (`pipeline.gradual_latent`). Reference-only:
`reference` {image, attention, adain, attention_weight, adain_weight, style_fidelity, scale_pattern}
(`pipeline.reference`), as `generate`'s --reference.

Output, as the official script writes it: `<root>/<config stem>-<time>/sample/<i>-<first ten prompt words>.gif`
per video (i counts over the whole run), a grid `sample.gif` of all videos, and `config.yaml` with the seeds used
(`random_seed` per entry). Every seed is drawn before the first video and `config.yaml` written then; each file is
written under a temporary name and renamed, so a run that is interrupted leaves whole GIFs and the seeds that drew
them.

Launched as several processes (`accelerate launch -m animatediff run CONFIG`, or torchrun), the videos are dealt
round-robin over them (`process_share`): each process loads the models of its own videos only and writes them into
the one run folder (its name and the seeds are the main process's), and the main process writes `config.yaml` and
the grid.
"""

from __future__ import annotations

import copy
import os
import random
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

from animatediff.entry_ip_keys import entry_ip_paths
from animatediff.entry_pipeline_args import entry_hires, entry_pipeline_args
from animatediff.errors import InputError, InputNotFound
from animatediff.io.atomic import write_atomic
from animatediff.model_cache import ModelCache, PipelineSpec
from animatediff.pipeline.control_inputs import entry_control_inputs
from animatediff.pipeline.hires import draw
from animatediff.pipeline.prompt_travel import PromptTravel
from animatediff.pipeline.sparse_ctrl_entries import keyframe_frames, read_keyframe_images
from animatediff.process_share import process_share
from animatediff.prompt_entries import PromptEntry, load_prompt_config, parse_entry, single_entry
from animatediff.region_entries import entry_mask_paths, entry_region_image_paths


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
        paths += [("vae_path", entry.vae_path)] + [("embeddings", p) for p in entry.embeddings]
        paths += [("lora_configs", str(c["path"])) for c in entry.lora_configs]
        paths += [("motion_module", m) for m in entry.motion_module] + [("video", entry.video)]
        paths += [("video_mask", entry.video_mask), ("motion_attention_mask", entry.motion_attention_mask)]
        paths += [("init_image", p) for p in (entry.init_image or {}).values() if isinstance(p, str)]
        paths += entry_ip_paths(entry)
        paths += [("regions mask", mask) for mask in entry_mask_paths(entry)]
        paths += [("regions ip_image", image) for image in entry_region_image_paths(entry)]
        paths += [("motion_module_lora_configs", str(c["path"])) for c in entry.motion_module_lora_configs]
        paths += [("controlnet_path", entry.controlnet_path), ("controlnet_config", entry.controlnet_config)]
        paths += [("controlnet_images", image) for image in entry.controlnet_images]
        paths += [(f"keyframe_controlnets {key}", item[key]) for item in entry.keyframe_controlnets
                  for key in ("model", "images")]  # fmt: skip
        for key, path in paths:
            if not path or Path(_local(path, here)).expanduser().exists():
                continue
            if any((root / path).parent.is_dir() for root in (Path.cwd(), here)):
                raise InputNotFound(
                    f"{config_name} entry {entry.name}: {key} {path!r} not found (looked in {Path.cwd()} and {here})"
                )


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
    from animatediff.formats.embeddings import check_embedding_file
    from animatediff.io.outputs import check_output_folder
    from animatediff.io.video import check_finite, grid, save_video
    from animatediff.io.video_input import read_image, read_video_input
    from animatediff.prompt_loras import prompt_without_lora_tags, tagged_loras

    config = Path(config)
    entries, raw = load_prompt_config(config)
    here = config.parent
    _check_local_paths(entries, here, config.name)
    _check_prompt_maps(entries, frames, config.name)
    for path in (_local(p, here) for e in entries for p in e.embeddings):  # embeddings readable, before loading
        check_embedding_file(path)
    tagged = {id(e): tagged_loras(e.prompts, [_local(d, here) for d in e.lora_dir]) for e in entries}  # <lora:…>
    for entry in (e for e in entries if e.video):  # every input video decodes and is long enough, before loading
        read_video_input(_local(entry.video, here), entry.L or frames, entry.video_stride, ("L", "video_stride"))
    for entry in (e for e in entries if e.init_image):  # every picture to start from reads, before loading
        for key in ("first", "last"):
            if entry.init_image.get(key):
                read_image(_local(entry.init_image[key], here), f"{config.name} entry {entry.name}: init_image {key}")
    controls = {e.name: entry_control_inputs(e, e.L or frames, lambda p: _local(p, here)) for e in entries}
    for entry in (e for e in entries if e.controlnet_path):  # SparseCtrl keyframes within the clip, images readable
        where = f"{config.name} entry {entry.name}"
        keyframe_frames(entry.controlnet_image_indexs, entry.L or frames, where)
        read_keyframe_images([_local(p, here) for p in entry.controlnet_images], False, where)
    check_output_folder(output_root, "output folder")
    cache = cache or ModelCache()
    share = process_share()
    out = Path(output_root) / share.broadcast(f"{config.stem}-{datetime.now().strftime('%Y-%m-%dT%H-%M-%S')}")
    used_seeds = share.broadcast(_draw_seeds(entries))
    if share.is_main:
        _write_config(out / "config.yaml", raw, used_seeds)
    mine: list[tuple[int, np.ndarray]] = []
    index = 0
    for entry, entry_seeds in zip(entries, used_seeds):
        drawn = iter(entry_seeds)
        loras = [("image", _local(entry.lora_model_path, here), float(entry.lora_alpha))] * bool(entry.lora_model_path)
        for cfg in entry.lora_configs:  # generate's --lora, after the official key's
            loras.append(("image", _local(str(cfg["path"]), here), float(cfg.get("alpha", 1.0))))
        if entry.adapter_lora_path:
            loras.append(("adapter", _local(entry.adapter_lora_path, here), float(entry.adapter_lora_scale)))
        for cfg in entry.motion_module_lora_configs:
            loras.append(("motion", _local(str(cfg["path"]), here), float(cfg.get("alpha", 1.0))))
        loras += tagged[id(entry)]  # the prompts' <lora:NAME:WEIGHT> tags
        for motion_module in entry.motion_module:
            first, index = index, index + len(entry.prompts)
            seeds = [next(drawn) for _ in entry.prompts]
            if not any(share.owns(i) for i in range(first, index)):
                continue  # none of these videos is this process's: nothing to load
            spec = PipelineSpec(
                base=_local(entry.base, here) or os.fspath(base),
                motion_module=_local(motion_module, here),
                dreambooth=_local(entry.dreambooth_path, here) or None,
                loras=tuple(loras),
                vae=_local(entry.vae_path, here) or None,
                embeddings=tuple(_local(p, here) for p in entry.embeddings),
            )
            pipe = cache.pipeline(spec)
            where = f"{config.name} entry {entry.name}"
            call = entry_pipeline_args(entry, pipe, frames, height, width, controls[entry.name],
                                       lambda p: _local(p, here), where, cache.control_model)  # fmt: skip
            videos = zip(range(first, index), entry.clip_prompts(call["num_frames"]), entry.negative_prompts, seeds)
            hires = entry_hires(entry)
            for i, prompt, negative, seed in ((i, p, n, s) for i, p, n, s in videos if share.owns(i)):
                prompt = prompt_without_lora_tags(prompt)
                video = draw(pipe, prompt, negative, seed, hires, progress=progress, **call)[0]
                path = out / "sample" / f"{i}-{sample_name(prompt)}.{entry.output_format}"
                check_finite(video, path)
                save_video(video, path, entry.fps or fps)
                mine.append((i, video))
    share.wait()
    videos = [video for _, video in sorted(share.gather(mine), key=lambda item: item[0])]
    if share.is_main and len({v.shape for v in videos}) == 1:
        save_video(grid(videos, columns=min(4, len(videos))), out / "sample.gif", fps)
    return out


def _draw_seeds(entries: list[PromptEntry]) -> list[list[int]]:
    """Each entry's seed of each video (per motion module, per prompt), -1 drawn at random."""
    draw = random.SystemRandom().randrange
    return [[s if s != -1 else draw(2**63) for _ in e.motion_module for s in e.seeds] for e in entries]


def _write_config(path: Path, raw: object, used: list[list[int]]) -> None:
    """The config as given, each entry with the seeds drawn so far (`random_seed`), written atomically."""
    text = yaml.safe_dump(_with_seeds(copy.deepcopy(raw), used), sort_keys=False)
    write_atomic(path, lambda tmp: tmp.write_text(text))


def _with_seeds(raw: object, used: list[list[int]]) -> object:
    items = [raw] if single_entry(raw) else raw if isinstance(raw, list) else list(raw.values())
    for entry, seeds in zip(items, used):
        entry["random_seed"] = seeds
    return raw


__all__ = ["PromptEntry", "load_prompt_config", "parse_entry", "run_prompt_config", "sample_name"]
