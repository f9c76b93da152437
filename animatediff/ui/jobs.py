"""The queue behind the page: requests run one at a time in a worker thread, in the order they came; each shows
its place in the queue, then its progress; any can be cancelled; a failure is the job's, never the queue's.
Finished jobs form the history, kept in the output folder as result + settings JSON, and read back at start."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from animatediff.errors import InputError
from animatediff.ui.settings import Settings, read_settings

logger = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside a running job's step callback when its cancel was asked for."""


@dataclass
class Job:
    id: str
    settings: Settings
    state: str = "queued"
    """queued, running, done, error or cancelled."""
    stage: str = ""
    """What a running job is doing: loading models, sampling, writing."""
    step: int = 0
    total: int = 0
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str = ""
    output: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def step_done(self) -> None:
        """The step callback's part: count, and stop here if cancelled."""
        self.step += 1
        self.total = max(self.total, self.step)
        if self.cancel.is_set():
            raise Cancelled

    def as_json(self, position: int | None = None) -> dict[str, Any]:
        now = time.time()
        elapsed = (self.finished or now) - self.started if self.started else 0.0
        eta = elapsed / self.step * (self.total - self.step) if self.state == "running" and self.step else None
        return {
            "id": self.id,
            "state": self.state,
            "stage": self.stage,
            "position": position,
            "step": self.step,
            "total": self.total,
            "elapsed": round(elapsed, 1),
            "eta": None if eta is None else round(eta, 1),
            "error": self.error,
            "file": self.output.name if self.output else None,
            "settings": self.settings.as_json(),
        }


class JobQueue:
    """Runs `run(job)` (which returns the written file) for each submitted job, one at a time, in order."""

    def __init__(self, run: Callable[[Job], Path], history_dir: Path | None = None) -> None:
        self._run = run
        self._lock = threading.Condition()
        self._queue: list[Job] = []
        self._jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self.history: list[Job] = []
        """Finished jobs with a result, oldest first."""
        self.history_dir = history_dir
        if history_dir is not None:
            self._read_history(history_dir)
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="animatediff-ui-worker", daemon=True)
        self._worker.start()

    def submit(self, settings: Settings) -> Job:
        with self._lock:
            job = Job(f"j{next(self._ids)}", settings)
            self._jobs[job.id] = job
            self._queue.append(job)
            self._lock.notify_all()
            return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise InputError(f"no job {job_id!r}")
        return job

    def position(self, job: Job) -> int | None:
        """1 for the next to run, 2 behind it, …; None once it is running or over."""
        with self._lock:
            return self._queue.index(job) + 1 if job in self._queue else None

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        with self._lock:
            job.cancel.set()
            if job in self._queue:
                self._queue.remove(job)
                job.state, job.finished = "cancelled", time.time()
        return job

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            for job in self._queue:
                job.cancel.set()
            self._lock.notify_all()
        self._worker.join(timeout)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                job = self._queue.pop(0)
                job.state, job.started = "running", time.time()
            try:
                job.output = self._run(job)
                job.state = "done"
            except Cancelled:
                job.state = "cancelled"
            except InputError as err:  # a model that fails to load, a bad size: the loader's one line
                job.state, job.error = "error", str(err)
            except Exception as err:  # a bug: its traceback goes to the server's log, the queue goes on
                logger.exception("job %s failed", job.id)
                job.state, job.error = "error", f"{type(err).__name__}: {err}"
            job.finished = time.time()
            if job.state == "done":
                with self._lock:
                    self.history.append(job)

    def _read_history(self, folder: Path) -> None:
        """Results an earlier server left in the output folder: each a file beside its settings JSON."""
        for settings_file in sorted(folder.glob("*.json")):
            try:
                record = json.loads(settings_file.read_text())
                output = folder / record["file"]
                settings = read_settings(settings_file)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if output.is_file():
                job = Job(f"h{settings_file.stem.split('-')[0]}", settings, state="done", output=output)
                job.started = job.finished = settings_file.stat().st_mtime
                self._jobs[job.id] = job
                self.history.append(job)
