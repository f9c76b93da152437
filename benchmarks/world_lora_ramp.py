"""A LoRA's scale ramped over the steps (`LoraRamp`, prompt-travel's `lcm_map`) on the embedded world: its outlined
LoRA (the 'style' look) at 0 and at 1 throughout, ramped up from 0 to 1 (prompt-travel's `lcm_map` shape: the low
scale until 20 % of the steps, the high one after 75 %) and ramped down from 1 to 0, on prompts asking for the look.

Counted per row, as `animatediff world eval` counts (`world.evaluate.evaluate_row`): clips moving as captioned and of
the captioned colour, and the frames the world's look classifier reads as the asked shape and texture (outlined).

    python benchmarks/world_lora_ramp.py            # 4 rows × 16 clips: a few minutes on 2 CPU cores
"""

from __future__ import annotations

from world_setup import clip_options, embedded_pipeline

from animatediff.pipeline.lora_ramp import LoraRamp
from animatediff.world.evaluate import evaluate_row, evaluation_prompts
from animatediff.world.layout import EMBEDDED, WorldModels
from animatediff.world.looks import load_look_classifier


def main() -> None:
    args = clip_options(__doc__.splitlines()[0]).parse_args()
    pipe = embedded_pipeline(args.threads, quiet=True)
    models = WorldModels.from_folder(EMBEDDED)
    name = pipe.add_lora(models.lora, 1.0)
    looks = load_look_classifier(models.looks)
    prompts, seeds = evaluation_prompts(args.prompts, look="style"), list(range(args.seeds))
    rows = {
        "LoRA at 0": [LoraRamp(name, 0.0, 0.0)],
        "ramped up, 0 → 1": [LoraRamp(name, 0.0, 1.0)],
        "ramped down, 1 → 0": [LoraRamp(name, 1.0, 0.0)],
        "LoRA at 1": [],
    }
    clips = len(prompts) * len(seeds)
    print(f"\n## The outlined LoRA's scale ramped over the steps, on the embedded world ({clips} clips a row, "
          f"{args.steps} DDIM steps, ramps from 20 % to 75 % of the steps)\n")  # fmt: skip
    print("| row | moves as captioned | captioned colour | look read (frames) |")
    print("|---|---|---|---|")
    for label, ramps in rows.items():

        def generate(text: str, seed: int, ramps: list = ramps) -> object:
            return pipe(text, seed=seed, num_frames=args.frames, num_inference_steps=args.steps, lora_ramps=ramps,
                        progress=False)[0]  # fmt: skip

        row = evaluate_row(label, generate, prompts, seeds, looks)
        moved, coloured = round(row.motion_accuracy * clips), round(row.colour_accuracy * clips)
        print(f"| {label} | {moved}/{clips} | {coloured}/{clips} | {row.look_accuracy:.2f} |", flush=True)


if __name__ == "__main__":
    main()
