"""The GPU check: ours against diffusers' AnimateDiffPipeline at the real SD1.5 shape, in one process, one table.

Random weights in the real SD1.5 shape and the real v2 motion-module shape are built here (nothing is downloaded).
Rows, each ours and diffusers alternated (diffusers, ours, ours, diffusers; the faster of each pair of runs kept),
the pipeline not measured moved to CPU memory so each peak is its own:

- 512² × 16 frames with CFG in fp16 and in bf16: seconds per step and peak VRAM, and the ratio to diffusers;
- ours with `--channels-last` (NHWC convolution weights), and with `--compile` (its first call, which compiles,
  reported apart);
- fp16 and bf16 frames against fp32 frames of the same seed: the largest and the mean pixel difference, and
  whether any value is not finite;
- 64 frames in context windows of 16;
- the small-VRAM modes' peak VRAM: VAE tiling, feed-forward chunking, model and sequential CPU offload.

    python benchmarks/gpu_check.py                 # on a GPU: about 8 minutes on an H100
    python benchmarks/gpu_check.py --tiny          # every row's code on CPU at a tiny size (the test suite runs it)
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_benchmark import PRESETS, build, diffusers_adapter, ours_pipeline, tokenizer  # noqa: E402 - shared

TINY = dict(channels=(32, 64, 64, 64), size=64, frames=4, text_dim=64, text_layers=1)
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class Check:
    """The models, built once, and the rows measured on them."""

    def __init__(self, preset: dict, device: str, steps: int, quiet: bool) -> None:
        import torch

        self.torch, self.preset, self.device, self.steps, self.quiet = torch, preset, device, steps, quiet
        self.unet, self.motion, self.vae, self.text, _ = build(preset)
        self.tok = tokenizer(tempfile.mkdtemp())
        self.rows: list[dict] = []

    # -------------------------------------------------------------------------------------------- pipelines

    def ours(self, dtype_name: str):  # noqa: ANN201
        import copy

        parts = (copy.deepcopy(m) for m in (self.text, self.vae, self.unet, self.motion))
        text, vae, unet, motion = parts
        return ours_pipeline(self.tok, text, vae, unet, motion, self.device, getattr(self.torch, DTYPES[dtype_name]))

    def diffusers(self, dtype_name: str):  # noqa: ANN201
        import copy

        from diffusers import AnimateDiffPipeline

        from animatediff.sampling import make_scheduler

        pipe = AnimateDiffPipeline(
            vae=copy.deepcopy(self.vae), text_encoder=copy.deepcopy(self.text), tokenizer=self.tok,
            unet=copy.deepcopy(self.unet), motion_adapter=diffusers_adapter(self.motion),
            scheduler=make_scheduler("ddim"),
        ).to(self.device, getattr(self.torch, DTYPES[dtype_name]))  # fmt: skip
        pipe.set_progress_bar_config(disable=True)
        return pipe

    # ------------------------------------------------------------------------------------------- measuring

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def _reset_peak(self) -> None:
        gc.collect()
        if self.device.startswith("cuda"):
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def _peak_gib(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 2**30 if self.device.startswith("cuda") else None

    def timed(self, run, steps: int) -> dict:  # noqa: ANN001 - run(n, on_step) draws n steps
        """One warm-up call, then `steps` steps: the median interval between step ends, and the peak VRAM."""
        run(1, lambda *_: None)
        stamps: list[float] = []

        def stamp(*_: object) -> None:
            self._sync()
            stamps.append(time.perf_counter())

        self._reset_peak()
        run(steps, stamp)
        return {"s_per_step": statistics.median(b - a for a, b in zip(stamps, stamps[1:])), "peak": self._peak_gib()}

    def run_ours(self, pipe, frames: int | None = None, **kwargs):  # noqa: ANN001, ANN201
        size = self.preset["size"]

        def run(n: int, on_step) -> object:  # noqa: ANN001
            return pipe("a red circle moving right", num_frames=frames or self.preset["frames"], height=size,
                        width=size, num_inference_steps=n, seed=0, progress=False, callback=on_step,
                        **kwargs)  # fmt: skip

        return run

    def run_diffusers(self, pipe):  # noqa: ANN001, ANN201
        size = self.preset["size"]

        def run(n: int, on_step) -> object:  # noqa: ANN001
            return pipe("a red circle moving right", num_frames=self.preset["frames"], height=size, width=size,
                        num_inference_steps=n, output_type="np", generator=self.torch.Generator("cpu").manual_seed(0),
                        callback_on_step_end=lambda p, i, t, kw: (on_step(), kw)[1])  # fmt: skip

        return run

    def row(self, what: str, dtype: str, result: dict, reference: dict | None = None, note: str = "") -> None:
        ratio = result["s_per_step"] / reference["s_per_step"] if reference else None
        memory = result["peak"] / reference["peak"] if reference and result["peak"] and reference["peak"] else None
        self.rows.append({"what": what, "dtype": dtype, **result, "time_ratio": ratio, "memory_ratio": memory,
                          "note": note})  # fmt: skip
        if not self.quiet:
            print(f"  measured: {what} {dtype}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------------------------ rows

    def speed(self, dtype: str, compile_too: bool) -> None:
        ours, theirs = self.ours(dtype), self.diffusers(dtype)
        results: dict[str, list[dict]] = {"ours": [], "diffusers": []}
        for which in ("diffusers", "ours", "ours", "diffusers"):  # order-balanced
            active, idle = (ours, theirs) if which == "ours" else (theirs, ours)
            idle.to("cpu")
            active.to(self.device)
            run = self.run_ours(active) if which == "ours" else self.run_diffusers(active)
            results[which].append(self.timed(run, self.steps))
        best = {k: min(v, key=lambda r: r["s_per_step"]) for k, v in results.items()}
        self.row("diffusers AnimateDiffPipeline", dtype, best["diffusers"])
        self.row("ours", dtype, best["ours"], best["diffusers"])
        theirs.to("cpu")
        from animatediff.pipeline.memory import MemoryOptions

        ours.to(self.device)
        ours.apply_memory_options(MemoryOptions(channels_last=True), self.device)
        self.run_ours(ours)(1, lambda *_: None)  # warm-up: the NHWC kernels' first choice
        self.row("ours --channels-last", dtype, self.timed(self.run_ours(ours), self.steps), best["diffusers"])
        ours.apply_memory_options(MemoryOptions(), self.device)
        if compile_too:
            start = time.perf_counter()
            ours.apply_memory_options(MemoryOptions(compile=True), self.device)
            self.run_ours(ours)(1, lambda *_: None)
            first = time.perf_counter() - start
            self.row("ours --compile", dtype, self.timed(self.run_ours(ours), self.steps), best["diffusers"],
                     f"first call {first:.0f} s")  # fmt: skip
        del ours, theirs

    def precision(self, dtypes: list[str]) -> None:
        """Frames in each of `dtypes` against fp32 frames of the same seed."""
        reference = self.run_ours(self.ours("fp32"))(min(self.steps, 4), lambda *_: None)
        for dtype in dtypes:
            frames = self.run_ours(self.ours(dtype))(min(self.steps, 4), lambda *_: None)
            finite = bool(self.torch.isfinite(self.torch.as_tensor(frames)).all())
            diff = abs(frames - reference)
            self.rows.append({"what": f"{dtype} frames vs fp32", "dtype": dtype, "s_per_step": None, "peak": None,
                              "time_ratio": None, "memory_ratio": None,
                              "note": f"max {diff.max():.4f}, mean {diff.mean():.5f}, finite {finite}"})  # fmt: skip

    def long_clip(self, dtype: str, frames: int, window: int) -> None:
        pipe = self.ours(dtype)
        result = self.timed(self.run_ours(pipe, frames, context_length=window, context_overlap=4), self.steps)
        self.row(f"ours {frames} frames, windows of {window}", dtype, result)

    def memory_modes(self, dtype: str) -> None:
        from animatediff.pipeline.memory import MemoryOptions

        modes = {"VAE tiling": MemoryOptions(vae_tiling=True), "FFN chunks of 1024": MemoryOptions(ff_chunk=1024)}
        if self.device.startswith("cuda"):
            modes["offload model"] = MemoryOptions(offload="model")
            modes["offload sequential"] = MemoryOptions(offload="sequential")
        for name, options in modes.items():
            pipe = self.ours(dtype)
            pipe.apply_memory_options(options, self.device)
            steps = 2 if options.offload == "sequential" else self.steps
            self.row(f"ours, {name}", dtype, self.timed(self.run_ours(pipe), steps))
            del pipe


def table(rows: list[dict], header: str) -> str:
    lines = [header, "", "| what | dtype | s/step | peak VRAM GiB | time vs diffusers | VRAM vs diffusers | note |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip

    def show(value: float | None, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    for r in rows:
        lines.append(
            f"| {r['what']} | {r['dtype']} | {show(r['s_per_step'], '.3f')} | {show(r['peak'], '.2f')} | "
            f"{show(r['time_ratio'], '.2f')} | {show(r['memory_ratio'], '.2f')} | {r['note']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model on CPU: every row's code, in seconds")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default 6; --tiny 3)")
    parser.add_argument("--no-compile", action="store_true", help="skip the --compile rows")
    parser.add_argument("--quiet", action="store_true", help="only the table")
    args = parser.parse_args(argv)
    import torch

    if args.tiny:
        device, preset, dtypes, steps = "cpu", TINY, ["bf16"], args.steps or 3
        compile_too = False
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA GPU here; --tiny runs the check on CPU")
        device, preset, dtypes, steps = "cuda", PRESETS["sd15"], ["fp16", "bf16"], args.steps or 6
        compile_too = not args.no_compile
    torch.manual_seed(0)
    check = Check(preset, device, steps, args.quiet)
    for dtype in dtypes:
        check.speed(dtype, compile_too)
    check.precision(dtypes)
    check.long_clip(dtypes[0], 64 if not args.tiny else 8, 16 if not args.tiny else 6)
    check.memory_modes(dtypes[0])
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    ch = preset["channels"]
    header = f"GPU check on {name}: UNet channels {ch}, {preset['frames']} frames at {preset['size']}², CFG on"
    text = table(check.rows, header)
    print(text)
    return text


if __name__ == "__main__":
    main()
