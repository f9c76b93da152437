"""A LoRA confined to a region (`RegionLora`, prompt-travel's `lora_map` with {region, scale}) on the embedded world:
its outlined LoRA (the 'style' look) acting nowhere, everywhere, only in a left-half region drawn with the same
caption, and only in the background (the right half) beside that region, on prompts asking for the look.

The LoRA is merged at 1, so every row reads its prompts with the LoRA's text-encoder part alike; the rows differ only
in where its UNet part acts. Counted per row: the frames the world's look classifier reads as the asked shape and
texture (outlined), split by the half the object's centre is in (`world.metrics.track`), and the clips moving as
captioned.

    python benchmarks/world_region_loras.py            # 4 rows × 16 clips: about four minutes on 2 CPU cores
    python benchmarks/world_region_loras.py --motions up,down,growing,shrinking   # objects that keep to their half
"""

from __future__ import annotations

import time

import numpy as np
from world_regions import half_mask
from world_setup import clip_options, embedded_pipeline

from animatediff.pipeline.region_loras import RegionLora
from animatediff.pipeline.regions import Region
from animatediff.world.evaluate import MEASURED_MOTIONS, evaluation_prompts
from animatediff.world.layout import EMBEDDED, WorldModels
from animatediff.world.looks import load_look_classifier
from animatediff.world.metrics import motion_correct, track


def main() -> None:
    parser = clip_options(__doc__.splitlines()[0])
    parser.add_argument("--motions", default=",".join(MEASURED_MOTIONS), help="the prompts' motions, in turn")
    args = parser.parse_args()
    pipe = embedded_pipeline(args.threads, quiet=True)
    models = WorldModels.from_folder(EMBEDDED)
    name = pipe.add_lora(models.lora, 1.0)
    looks = load_look_classifier(models.looks)
    prompts = evaluation_prompts(args.prompts, motions=tuple(args.motions.split(",")), look="style")
    seeds = list(range(args.seeds))
    rows = {
        "nowhere (scale 0)": ([RegionLora(name, scale=0.0)], False),
        "everywhere": ([RegionLora(name)], False),
        "left-half region": ([RegionLora(name, [0])], True),
        "background (right half)": ([RegionLora(name, ["background"])], True),
    }
    clips = len(prompts) * len(seeds)
    print(f"\n## The outlined LoRA confined to a region, on the embedded world ({clips} clips a row, {args.steps} DDIM "
          "steps, the region the left half drawn with the same caption)\n")  # fmt: skip
    print("| LoRA acts | look read, object on the left (frames) | on the right | moves as captioned | s/clip |")
    print("|---|---|---|---|---|")
    for label, (loras, regional) in rows.items():
        read = {"left": [], "right": []}
        moved, start = 0, time.perf_counter()
        for prompt in prompts:
            regions = [Region(prompt.text, half_mask(32, "left"))] if regional else []
            for seed in seeds:
                frames = pipe(prompt.text, seed=seed, num_frames=args.frames, num_inference_steps=args.steps,
                              regions=regions, region_loras=loras, progress=False)[0]  # fmt: skip
                t = track(frames)
                moved += motion_correct(t, prompt.motion)
                shapes, textures = looks.predict(frames)
                for x, shape, texture in zip(t.x, shapes, textures, strict=True):
                    read["left" if x < 0.5 else "right"].append(shape == prompt.shape and texture == prompt.texture)
        seconds = (time.perf_counter() - start) / clips
        left, right = (f"{sum(v)}/{len(v)} ({np.mean(v):.2f})" if v else "–" for v in read.values())
        print(f"| {label} | {left} | {right} | {moved}/{clips} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
