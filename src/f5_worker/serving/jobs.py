"""RunPod's job endpoints on the local API: ``/run``, ``/runsync``, ``/status/{id}``, ``/stream/{id}``, ``/cancel/{id}``.

The same request and response shapes as a RunPod endpoint (``{"input": {...}}`` in;
``{"id", "status": "IN_QUEUE" | "IN_PROGRESS" | "COMPLETED" | "FAILED" | "CANCELLED", "output" | "error"}``
out), so a request that works here works on RunPod. The RunPod SDK is not imported for
them: it costs 1.5 s of start-up and its local server only stashes ``/run`` jobs until
someone polls. Here a ``/run`` job starts at once; finished jobs are kept for
``KEEP_S`` seconds (at most ``KEEP_MAX`` of them) for ``/status`` to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Jobs", "Job"]

KEEP_S = 600.0
KEEP_MAX = 1000

RunFn = Callable[[Any, Callable[[], bool]], dict]  # (input, cancelled) -> result or {"error": ...}
StreamFn = Callable[[Any, Callable[[], bool]], Iterator[dict]]  # (input, cancelled) -> pieces


@dataclass
class Job:
    id: str
    status: str = "IN_QUEUE"
    output: Any = None
    error: str | None = None
    pieces: list = field(default_factory=list)  # streamed outputs, in order
    sent: int = 0  # pieces already returned by /stream
    cancel: threading.Event = field(default_factory=threading.Event)
    finished_at: float | None = None
    task: asyncio.Task | None = None

    def to_json(self) -> dict:
        data: dict = {"id": self.id, "status": self.status}
        if self.status == "COMPLETED":
            data["output"] = self.output
        if self.error is not None:
            data["error"] = self.error
        return data


class Jobs:
    """Runs jobs through ``run`` (whole results) or ``stream`` (pieces), each on a worker thread."""

    def __init__(self, run: RunFn, stream: StreamFn | None = None):
        self._run, self._stream = run, stream
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    async def execute(self, job: Job, payload: Any) -> Job:
        job.status = "IN_PROGRESS"
        try:
            if self._stream is None:
                result = await asyncio.to_thread(self._run, payload, job.cancel.is_set)
                self._settle(job, result)
            else:
                pieces = self._stream(payload, job.cancel.is_set)
                while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                    if "error" in piece:
                        self._settle(job, piece)
                        break
                    job.pieces.append(piece)
                else:
                    self._settle(job, {"output": job.pieces})
        except asyncio.CancelledError:
            job.cancel.set()
            job.status = "CANCELLED"
            raise
        finally:
            job.finished_at = time.monotonic()
        return job

    @staticmethod
    def _settle(job: Job, result: dict) -> None:
        if job.cancel.is_set():
            job.status = "CANCELLED"
        elif "error" in result:
            job.status, job.error = "FAILED", str(result["error"])
        else:
            job.status, job.output = "COMPLETED", result.get("output", result)

    def submit(self, payload: Any, held: contextlib.AbstractContextManager | None = None) -> Job:
        """Start a job now (``/run``); its task runs on the event loop, inside ``held`` (admission) if given."""
        self._forget_old()
        job = Job(f"local-{uuid.uuid4()}")
        self._jobs[job.id] = job

        async def run() -> Job:
            with held or contextlib.nullcontext():
                return await self.execute(job, payload)

        job.task = asyncio.get_running_loop().create_task(run())
        return job

    async def run_sync(self, payload: Any) -> Job:
        """Run a job and wait for it (``/runsync``); cancelled when the client goes away."""
        job = Job(f"sync-{uuid.uuid4()}")
        return await self.execute(job, payload)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def take_stream(self, job: Job) -> list:
        """The pieces not returned yet (``/stream``)."""
        new = job.pieces[job.sent:]
        job.sent = len(job.pieces)
        return new

    def cancel(self, job: Job) -> None:
        job.cancel.set()  # chunks not yet sampled leave their batches
        if job.status in ("IN_QUEUE", "IN_PROGRESS"):
            job.status = "CANCELLED"

    def _forget_old(self) -> None:
        now = time.monotonic()
        for job_id, job in list(self._jobs.items()):
            old = job.finished_at is not None and now - job.finished_at > KEEP_S
            if old or len(self._jobs) > KEEP_MAX and job.finished_at is not None:
                del self._jobs[job_id]
