"""Time and peak memory of one call.

``peak_memory_mb``: on CUDA, ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats`` (the allocator's peak during the call; ``peak_memory_reserved_mb``
adds the caching allocator's reserve); on the CPU, the peak resident set size (RSS) of the
process while the call runs, sampled every 2 ms by a background thread (psutil), and
``memory_delta_mb``, that peak minus the RSS when the call started (what the call itself
added). ``getrusage`` is not used: its peak covers the whole life of the (reused) worker.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Measurement:
    seconds: float = 0.0
    memory: dict[str, float] = field(default_factory=dict)


@contextmanager
def measure(device: str):
    import psutil
    import torch

    m = Measurement()
    cuda = str(device).startswith("cuda")
    proc = psutil.Process()
    start_rss = proc.memory_info().rss
    peak = [start_rss]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.002)

    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        sampler = None
    else:
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    t0 = time.perf_counter()
    try:
        yield m
    finally:
        if cuda:
            torch.cuda.synchronize(device)
        m.seconds = time.perf_counter() - t0
        if cuda:
            m.memory = {
                "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                "peak_memory_reserved_mb": torch.cuda.max_memory_reserved(device) / 2**20,
            }
        else:
            stop.set()
            sampler.join()
            peak[0] = max(peak[0], proc.memory_info().rss)
            m.memory = {"peak_memory_mb": peak[0] / 2**20, "memory_delta_mb": (peak[0] - start_rss) / 2**20}
