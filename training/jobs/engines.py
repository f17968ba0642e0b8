"""Engines that run BatchTriager over staged shards: this process, a process pool, or Ray Data.

Every engine yields lists of output rows; the driver (reclassify.py) regroups them by shard
through their `seq`, so an engine may return batches in any order. Results do not depend on how
rows are batched (the classifier's probabilities for a text are bit-identical whatever else is
in its batch — checked in tests/jobs), so all engines produce the same report.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq

from training.jobs.triager import BatchTriager, TriagerConfig, init_worker, triage_in_worker

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 64
#: CPUs reserved per Ray actor. Whole-CPU actors on a 2-CPU node left nothing for the read tasks
#: and the pipeline hung (DESIGN.md, "Measured on this kind of machine"): keep it fractional.
RAY_ACTOR_CPUS = 0.5
RAY_BLOCK_ROWS = 1_000


class Engine(Protocol):
    name: str

    def run(self, shards: list[Path]) -> Iterator[list[dict[str, Any]]]: ...


def _batches(shards: list[Path], size: int) -> Iterator[list[dict[str, Any]]]:
    for shard in shards:
        rows = pq.read_table(shard).to_pylist()
        for i in range(0, len(rows), size):
            yield rows[i:i + size]


class LocalEngine:
    """This process (workers=1) or a spawn-context pool with one BatchTriager per worker process."""

    name = "local"

    def __init__(self, config: TriagerConfig, workers: int = 1, batch_size: int = DEFAULT_BATCH) -> None:
        self.config = config
        self.workers = max(1, workers)
        self.batch_size = batch_size

    def run(self, shards: list[Path]) -> Iterator[list[dict[str, Any]]]:
        batches = _batches(shards, self.batch_size)
        if self.workers == 1:
            triager = BatchTriager(self.config)
            for batch in batches:
                yield triager.triage_rows(batch)
            return
        # spawn, not fork: the parent may hold onnxruntime/Ray threads that a fork would copy broken.
        ctx = mp.get_context("spawn")
        with ctx.Pool(self.workers, initializer=init_worker, initargs=(self.config,)) as pool:
            # Pool.imap would read the whole input ahead; keep a bounded window in flight instead.
            window: deque[Any] = deque()
            for batch in batches:
                window.append(pool.apply_async(triage_in_worker, (batch,)))
                if len(window) >= 2 * self.workers:
                    yield window.popleft().get()
            while window:
                yield window.popleft().get()


class RayEngine:
    """Ray Data: read_parquet → map_batches(BatchTriager) on an actor pool (one model session per actor)."""

    name = "ray"

    def __init__(self, config: TriagerConfig, *, address: str | None = None, workers: int = 2,
                 batch_size: int = DEFAULT_BATCH, actor_cpus: float = RAY_ACTOR_CPUS, local_cpus: int = 2) -> None:
        self.config = config
        self.address = address
        self.workers = max(1, workers)
        self.batch_size = batch_size
        self.actor_cpus = actor_cpus
        self.local_cpus = local_cpus

    def _init(self) -> bool:
        import ray

        if ray.is_initialized():
            return False
        if self.address in (None, "", "local"):
            # Local mode: a private single-node cluster in this process (what the tests run).
            ray.init(num_cpus=self.local_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        return True

    def run(self, shards: list[Path]) -> Iterator[list[dict[str, Any]]]:
        import ray
        import ray.data

        started = self._init()
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.execution_options.preserve_order = True  # not needed for correctness; keeps commits streaming
            ctx.enable_progress_bars = False  # our own tqdm bar on stderr
            # Blocks of ~RAY_BLOCK_ROWS rows: an actor takes a whole block, so shard-sized blocks (or the
            # few blocks Ray makes of small files) kept the second actor idle (seen in bench/reclassify.py).
            rows = sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
            blocks = max(len(shards), 2 * self.workers, -(-rows // RAY_BLOCK_ROWS))
            ds = ray.data.read_parquet([str(p) for p in shards], override_num_blocks=blocks)
            ds = ds.map_batches(
                BatchTriager,
                fn_constructor_args=(self.config,),
                batch_size=self.batch_size,
                batch_format="pyarrow",
                concurrency=self.workers,
                num_cpus=self.actor_cpus,
            )
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                yield batch.to_pylist()
        finally:
            if started:
                ray.shutdown()

