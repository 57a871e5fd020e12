"""The RunPod handler: jobs in through the SDK, run on a thread so several can be in flight.

Concurrent jobs meet in the engine's batcher, which samples their text chunks together
on the GPU; concurrency also overlaps what is not GPU work (fetching and decoding
references, encoding outputs). A job the SDK cancels leaves its batch: chunks not yet
started are dropped.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .service import Service

__all__ = ["make_handler", "serve_runpod"]


def make_handler(service: Service, streaming: bool):
    if streaming:
        async def stream_handler(job: dict):
            cancel = threading.Event()
            pieces = service.stream(job.get("input"), cancel.is_set)
            try:
                while (item := await asyncio.to_thread(next, pieces, None)) is not None:
                    yield item
            except asyncio.CancelledError:
                cancel.set()
                raise

        return stream_handler

    async def handler(job: dict) -> dict:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(service.run, job.get("input"), cancel.is_set)
        except asyncio.CancelledError:
            cancel.set()
            raise

    return handler


def runpod_config(service: Service, streaming: bool, concurrency: Callable[[], int]) -> dict:
    return {
        "handler": make_handler(service, streaming),
        # asked again and again by the SDK: follows the batch size once start-up tuning has measured it
        "concurrency_modifier": lambda current: concurrency(),
        "return_aggregate_stream": True,  # /run and /runsync also get the streamed pieces, as a list
    }


def serve_runpod(service: Service, streaming: bool, concurrency: Callable[[], int]) -> None:
    import runpod

    runpod.serverless.start(runpod_config(service, streaming, concurrency))
