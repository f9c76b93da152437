"""An animatediff-cli-prompt-travel config file run on the embedded world: does its `motion_lora_map` steer the
motion? The same document (every section of prompt-travel's template present and switched off, the world's
shipped models as its paths) is run with `animatediff run`'s code for each prompt and seed, with the world's
MotionLoRA of the captioned direction in its motion_lora_map and without it, as `world eval`'s MotionLoRA row
compares them; the written clips (lossless WebP, via the document's `output`) are tracked as `world eval` tracks
them.

    python benchmarks/world_prompt_travel_config.py               # 4 directions × 4 seeds × 2 rows: a few minutes
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence

from animatediff.model_cache import ModelCache
from animatediff.prompt_config import run_prompt_config
from animatediff.world.layout import EMBEDDED, embedded_models
from animatediff.world.metrics import motion_correct, track

OFF = {"enable": False}


def document(prompt: str, seed: int, motion_loras: dict[str, float]) -> dict:
    """A prompt-travel config as its template writes one, on the embedded world."""
    return {
        "name": "world", "path": "", "motion_module": str(EMBEDDED / "motion_module.safetensors"),
        "base": str(EMBEDDED / "base"), "compile": False, "seed": [seed], "scheduler": "ddim", "steps": 25,
        "guidance_scale": 3.0, "unet_batch_size": 1, "clip_skip": 1, "prompt_fixed_ratio": 0.5, "head_prompt": "",
        "prompt_map": {"0": prompt}, "tail_prompt": "", "n_prompt": [""], "is_single_prompt_mode": False,
        "lora_map": {}, "motion_lora_map": motion_loras, "ip_adapter_map": {**OFF, "scale": 0.5},
        "img2img_map": {**OFF, "denoising_strength": 0.7}, "region_map": {},
        "controlnet_map": {"input_image_dir": "controlnet_image/test", "controlnet_tile": OFF},
        "upscale_config": {"steps": 20}, "output": {"format": "webp", "fps": 8, "encode_param": {"crf": 10}},
    }  # fmt: skip


def frames_of(path: Path) -> np.ndarray:
    return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))]) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds per direction")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loras = embedded_models().motion_loras
    cache = ModelCache()
    directions = ("left", "right", "up", "down")
    clips = len(directions) * args.seeds
    print("\n## A prompt-travel config on the embedded world: motion_lora_map\n")
    prompts = "'a red circle moving <direction> on a blue background'"
    print(f"{prompts}, 16 frames, 25 DDIM steps, seeds 0–{args.seeds - 1}.\n")
    print("| motion_lora_map | clips moving as captioned | clips |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for with_lora in (False, True):
            hits = 0
            for direction in directions:
                prompt = f"a red circle moving {direction} on a blue background"
                for seed in range(args.seeds):
                    maps = {str(loras[direction]): 1.0} if with_lora else {}
                    config = Path(tmp) / "prompt_travel.json"
                    config.write_text(json.dumps(document(prompt, seed, maps)))
                    root = Path(tmp) / f"{with_lora}-{direction}-{seed}"
                    out = run_prompt_config(config, EMBEDDED / "base", root, cache, progress=False)
                    (clip,) = (out / "sample").iterdir()
                    hits += motion_correct(track(frames_of(clip)), direction)
            label = "the captioned direction's MotionLoRA: 1.0" if with_lora else "{} (the motion module alone)"
            print(f"| {label} | {hits} of {clips} | {clips} |", flush=True)


if __name__ == "__main__":
    main()
