"""Batch jobs: re-classify stored cases or petition files with a (new) model and rule file.

`triage reclassify` (training/jobs/cli.py) → `reclassify(ReclassifyRequest)` (reclassify.py):
stage the input into checkpointed Parquet shards (sources.py, store_io.py), triage every shard
with one model session per worker (triager.py) on the local or the Ray engine (engines.py),
write the change report (report.py) and, with --apply, write the results to the case store.
"""

from training.jobs.reclassify import ReclassifyRequest, ReclassifySummary, reclassify

__all__ = ["ReclassifyRequest", "ReclassifySummary", "reclassify"]
