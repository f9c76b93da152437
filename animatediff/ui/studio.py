"""What the server serves: the models catalog, the model cache that keeps them loaded, uploads, the queue, and the
generation each job runs."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from animatediff.errors import InputError
from animatediff.io.atomic import write_atomic
from animatediff.model_cache import ModelCache
from animatediff.ui.catalog import Catalog, scan
from animatediff.ui.job_models import spec
from animatediff.ui.jobs import Job, JobQueue
from animatediff.ui.run_config import run_entry, run_yaml
from animatediff.ui.settings import Settings, output_stem, prompt_of

if TYPE_CHECKING:
    from animatediff.pipeline.memory import MemoryOptions

UPLOAD_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".webp", ".png", ".jpg", ".jpeg")
DEFAULT_UPLOAD_CAP = 64 * 2**20
"""Bytes an upload may have."""


class Uploads:
    """Uploaded files in a private temporary folder, named by a random id; removed with the server."""

    def __init__(self, cap: int = DEFAULT_UPLOAD_CAP) -> None:
        self.cap = cap
        self.folder = Path(tempfile.mkdtemp(prefix="animatediff-ui-uploads-"))
        self._names: dict[str, Path] = {}

    def check_size(self, size: int) -> None:
        if size > self.cap:
            raise InputError(f"upload of {human_size(size)} is over the {human_size(self.cap)} cap")

    def add(self, filename: str, data: bytes) -> str:
        """Keep an upload; its id (the only name the page uses for it)."""
        self.check_size(len(data))
        suffix = Path(filename).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise InputError(f"upload {Path(filename).name!r}: expected one of {', '.join(UPLOAD_SUFFIXES)}")
        upload_id = uuid.uuid4().hex
        path = self.folder / f"{upload_id}{suffix}"
        path.write_bytes(data)
        self._names[upload_id] = path
        return upload_id

    def path(self, upload_id: str) -> Path:
        if upload_id not in self._names:
            raise InputError(f"no upload {upload_id!r} (upload the file again)")
        return self._names[upload_id]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Studio:
    """The app's state: one per server."""

    def __init__(
        self,
        models_dir: str | os.PathLike | None,
        output_dir: str | os.PathLike,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        upload_cap: int = DEFAULT_UPLOAD_CAP,
        memory: MemoryOptions | None = None,
    ) -> None:
        """`memory`: the small-GPU and speed options every job runs with (`pipeline/memory.py`); None: defaults."""
        self.models_dir = models_dir
        self.catalog: Catalog = scan(models_dir)
        self.cache = ModelCache(device, dtype, memory=memory)
        self.uploads = Uploads(upload_cap)
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._numbers = iter(range(_next_number(self.output_dir), 10**9))
        self._number_lock = threading.Lock()
        self.queue = JobQueue(self.generate, self.output_dir)

    def refresh(self) -> Catalog:
        self.catalog = scan(self.models_dir)
        return self.catalog

    def run_yaml(self, job: Job) -> str:
        return run_yaml(job.settings, self.catalog, lambda upload: str(self.uploads.path(upload)))

    def generate(self, job: Job) -> Path:
        """Load (or keep) the models, sample with progress and cancel, write the result and its settings. The job
        draws through the `run` entry it downloads as (`entry_pipeline_args`, as `animatediff run` draws), so the
        two give the same frames."""
        from animatediff.entry_pipeline_args import entry_hires, entry_pipeline_args
        from animatediff.io.video import check_finite, save_video
        from animatediff.pipeline.control_inputs import entry_control_inputs
        from animatediff.pipeline.hires import draw
        from animatediff.prompt_entries import parse_entry
        from animatediff.sampling.loop import sampling_timesteps

        s: Settings = job.settings
        entry = parse_entry(run_entry(s, self.catalog, lambda upload: str(self.uploads.path(upload))), "form")
        controls = entry_control_inputs(entry, s.frames, str)  # the control videos read before any model loads
        job.stage = "loading models"
        pipe = self.cache.pipeline(spec(s, self.catalog))
        call = entry_pipeline_args(entry, pipe, s.frames, s.height, s.width, controls, str, "form",
                                   self.cache.control_model)  # fmt: skip
        strength = call["strength"] if call["video"] is not None else 1.0
        steps = len(sampling_timesteps(pipe.scheduler, call["num_inference_steps"], strength))
        job.total = steps * (s.free_init_iters or 1)
        if call["gradual_latent"] is not None:  # the steps it goes back over
            job.total += call["gradual_latent"].steps_again(steps)
        hires = entry_hires(entry)
        if hires is not None:  # and the second pass's steps (it runs without FreeInit)
            hires_steps = hires.second_steps(call["num_inference_steps"])
            job.total += len(sampling_timesteps(pipe.scheduler, hires_steps, hires.strength))
        job.stage = "sampling"
        frames = draw(pipe, prompt_of(s), s.negative_prompt, s.seed, hires, progress=False,
                      callback=lambda *_: job.step_done(), **call)[0]  # fmt: skip
        job.stage = "writing"
        with self._number_lock:
            stem = output_stem(s, next(self._numbers))
        path = self.output_dir / f"{stem}.{s.output_format}"
        check_finite(frames, path)
        save_video(frames, path, s.fps)
        record = json.dumps({**s.as_json(), "file": path.name}, indent=1)
        write_atomic(self.output_dir / f"{stem}.json", lambda tmp: tmp.write_text(record))
        return path

    def close(self) -> None:
        self.queue.close()
        self.uploads.remove()


def human_size(size: int) -> str:
    """'512 B', '4.0 KiB', '64.0 MiB'."""
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError


def _next_number(folder: Path) -> int:
    numbers = [int(p.name.split("-")[0]) for p in folder.glob("*.json") if p.name.split("-")[0].isdigit()]
    return max(numbers, default=0) + 1
