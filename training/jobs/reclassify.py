"""Re-classify petitions with a model + rule file and report what changed (dry run by default).

A job runs in three resumable phases, each checkpointed (a file next to the report for file
input; the `job_runs` table for store input):

1. **stage** — stream the input (files via `datasets`, or the case store) and validate every
   record into Parquet shards of `checkpoint_every` input records under ``OUT/.reclassify/``;
   bad records are kept per shard with their source, position and id.
2. **triage** — run the engine over the shards not yet processed; every completed shard is
   (with --apply) written to the store, then saved as ``cases-K.parquet`` and checkpointed.
   A killed job redoes at most the shard in flight; applying is idempotent per case.
3. **report** — assemble the change report (report.py) and delete the staged input.

The job's identity (`fingerprint`) covers the input content, the model version and artifact
hashes, the rule file bytes, the extractor version and the options that change results. The
same job in the same directory resumes or, when complete, changes nothing; another job there is
refused unless `restart` is set.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import logging
import resource
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from training.jobs.engines import DEFAULT_BATCH, Engine, LocalEngine, RayEngine
from training.jobs.report import ReportCounts, summary_lines, write_report
from training.jobs.sources import (
    STAGED_SCHEMA,
    RawRecord,
    RecordError,
    detect_format,
    iter_file,
    load_previous_report,
    stage_record,
    write_parquet_atomic,
    write_text_atomic,
)
from training.jobs.triager import OUTPUT_SCHEMA, PAYLOAD_COLUMNS, TriagerConfig
from triage.errors import TriageError
from triage.manifest import load_manifest, sha256_file

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "models" / "default"
DEFAULT_RULES = ROOT / "data" / "policy" / "rules.toml"
WORK_DIR = ".reclassify"
CHECKPOINT_FILE = "checkpoint.json"
STATE_VERSION = 1


class JobConflictError(TriageError, ValueError):
    """The report directory holds another job (other input, model, rules or options)."""

    code = "T110"
    title = "输出目录已有其他任务"


@dataclass
class ReclassifyRequest:
    """One re-classification job. Exactly one input: `data` files or a store `db_url`."""

    out_dir: Path
    data: list[Path] = field(default_factory=list)
    db_url: str | None = None
    model_dir: Path = DEFAULT_MODEL
    rules_path: Path = DEFAULT_RULES
    data_dir: Path | None = None
    previous: Path | None = None  # a previous report: its new labels are the "old" labels
    engine: str = "local"  # local | ray
    workers: int = 1
    address: str | None = None  # Ray cluster address; None/"local" = a local Ray instance
    checkpoint_every: int = 5_000
    batch_size: int = DEFAULT_BATCH
    reextract: bool = False
    ner: bool = True
    link: bool = False
    apply: bool = False
    restart: bool = False
    progress: bool = True
    actor: str = "reclassify-job"  # audit actor for --apply
    as_of: datetime | None = None  # "now" for the rules (deadlines); default: when the job starts, kept on resume


@dataclass
class ShardInfo:
    index: int
    records: int  # valid records (staged rows)
    bad: int
    first_seq: int


@dataclass
class JobState:
    """The checkpoint: what has been staged and processed so far."""

    job_id: str
    fingerprint: str
    version: int = STATE_VERSION
    cursor: dict[str, Any] = field(default_factory=dict)  # files: {source, consumed}; store: {after_id}
    staged: bool = False
    next_seq: int = 0
    shards: list[ShardInfo] = field(default_factory=list)
    processed: int = 0  # shards processed (always a prefix)
    done: bool = False
    applied: dict[str, int] = field(default_factory=dict)
    as_of: str = ""  # the rules' "now", fixed when the job starts so a resumed job decides alike

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobState:
        shards = [ShardInfo(**s) for s in data.pop("shards", [])]
        return cls(**data, shards=shards)


@dataclass
class ReclassifySummary:
    job_id: str
    out_dir: Path
    counts: ReportCounts | None
    lines: list[str]
    resumed: bool = False
    already_complete: bool = False
    processed_now: int = 0
    elapsed_s: float = 0.0
    rate_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    applied: dict[str, int] = field(default_factory=dict)


# -- checkpoint stores ------------------------------------------------------------------------------


class FileCheckpoint:
    """The job state as JSON next to the report (file input)."""

    def __init__(self, work: Path) -> None:
        self.path = work / CHECKPOINT_FILE

    def load(self) -> JobState | None:
        if not self.path.exists():
            return None
        return JobState.from_json(json.loads(self.path.read_text(encoding="utf-8")))

    def save(self, state: JobState) -> None:
        write_text_atomic(self.path, json.dumps(asdict(state), ensure_ascii=False, sort_keys=True))

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


# -- fingerprint ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _extractor_version(ner: bool, data_dir: Path | None = None) -> str:
    """The version of the extractor the workers would build (its parts decide it: NER, organisation tagger)."""
    from training.jobs.triager import build_extractor
    from triage.taxonomy import load_taxonomy

    return build_extractor(load_taxonomy(data_dir) if data_dir else load_taxonomy(), ner).version


def job_fingerprint(req: ReclassifyRequest, input_identity: list[Any]) -> str:
    """sha256 over everything that determines the job's results."""
    manifest = load_manifest(req.model_dir)
    ident = {
        "kind": "reclassify",
        "input": input_identity,
        "model": f"{manifest.name}@{manifest.version}",
        "artifacts": manifest.artifacts,
        "rules_sha256": sha256_file(req.rules_path),
        "extractor": _extractor_version(req.ner, req.data_dir),
        "reextract": req.reextract,
        "link": req.link,
        "previous": sha256_file(req.previous / "cases.parquet") if req.previous else None,
        "apply": req.apply,
        "as_of": req.as_of.isoformat() if req.as_of else None,
    }
    blob = json.dumps(ident, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _file_identity(paths: list[Path]) -> list[Any]:
    return [[p.name, p.stat().st_size, sha256_file(p)] for p in paths]


# -- the job ----------------------------------------------------------------------------------------


class ReclassifyJob:
    def __init__(self, req: ReclassifyRequest) -> None:
        if bool(req.data) == bool(req.db_url):
            raise ValueError("give exactly one input: --data FILE (repeatable) or --db URL")
        if req.apply and not req.db_url:
            raise ValueError("--apply writes to the case store: it needs --db (file input is always a dry run)")
        if req.link:
            raise ValueError("--link: linking in batch jobs is not available yet (the linker issue); run without it")
        if req.engine not in ("local", "ray"):
            raise ValueError(f"--engine must be local or ray, not {req.engine!r}")
        if req.checkpoint_every < 1:
            raise ValueError("--checkpoint-every must be at least 1")
        for p in req.data:
            detect_format(p)
            if not p.is_file():
                raise FileNotFoundError(f"{p}: no such input file")
        if not (req.model_dir / "manifest.json").exists():
            raise FileNotFoundError(f"{req.model_dir}: no manifest.json (train a model or point --model at one)")
        if not req.rules_path.is_file():
            raise FileNotFoundError(f"{req.rules_path}: no such rule file")
        _preflight(req)
        self.req = req
        self.out = req.out_dir
        self.work = req.out_dir / WORK_DIR
        self.store: Any = None
        if req.db_url:
            from training.jobs.store_io import StoreJobIO

            self.store = StoreJobIO(req.db_url, actor=req.actor)
            identity: list[Any] = [self.store.identity()]
        else:
            identity = _file_identity(req.data)
        self.fingerprint = job_fingerprint(req, identity)
        self.job_id = "reclassify-" + self.fingerprint[:16]
        self.checkpoint: Any = self.store.checkpoint(self.job_id, self._params()) if self.store else FileCheckpoint(self.work)
        self.sources = [p.name for p in req.data] if req.data else ["store"]

    def _params(self) -> dict[str, Any]:
        r = self.req
        return {"out_dir": str(r.out_dir), "model": str(r.model_dir), "rules": str(r.rules_path), "engine": r.engine,
                "workers": r.workers, "reextract": r.reextract, "ner": r.ner, "apply": r.apply,
                "checkpoint_every": r.checkpoint_every, "fingerprint": self.fingerprint}

    def triager_config(self, as_of: str) -> TriagerConfig:
        r = self.req
        return TriagerConfig(model_dir=str(r.model_dir.resolve()), rules_path=str(r.rules_path.resolve()),
                             data_dir=str(r.data_dir.resolve()) if r.data_dir else None, ner=r.ner,
                             reextract=r.reextract, keep_payload=r.apply, as_of=as_of,
                             extractor_version=_extractor_version(r.ner, r.data_dir))

    def make_engine(self, as_of: str) -> Engine:
        r = self.req
        config = self.triager_config(as_of)
        if r.engine == "ray":
            return RayEngine(config, address=r.address, workers=max(1, r.workers), batch_size=r.batch_size)
        return LocalEngine(config, workers=r.workers, batch_size=r.batch_size)

    # -- state ------------------------------------------------------------------------------------

    def _open_state(self) -> tuple[JobState, bool]:
        state = self.checkpoint.load()
        if state is not None and state.fingerprint != self.fingerprint and not self.req.restart:
            raise JobConflictError(
                f"{self.out} holds another job ({state.job_id}; this one is {self.job_id}: other input, model, "
                "rules or options). Choose another --out, or pass --restart to discard it.")
        if self.req.restart:
            state = None  # run again from the start (applying is idempotent per case)
        if state is not None and state.version == STATE_VERSION and self._files_present(state):
            return state, True
        if state is not None:
            logger.warning("job %s: checkpoint without its files in %s: starting over", self.job_id, self.work)
        shutil.rmtree(self.work, ignore_errors=True)
        self.checkpoint.discard()
        self.work.mkdir(parents=True, exist_ok=True)
        as_of = self.req.as_of or datetime.now(UTC)
        if as_of.tzinfo is None:
            raise ValueError("--as-of needs a time zone, e.g. 2026-03-01T10:00:00+08:00")
        state = JobState(job_id=self.job_id, fingerprint=self.fingerprint, as_of=as_of.isoformat())
        self.checkpoint.save(state)
        return state, False

    def _files_present(self, state: JobState) -> bool:
        if state.done:
            return (self.out / "summary.json").exists()
        staged_ok = all(self._input_path(s.index).exists() for s in state.shards[state.processed:])
        parts_ok = all(self._part_path(s.index).exists() for s in state.shards[:state.processed])
        return staged_ok and parts_ok

    def _input_path(self, k: int) -> Path:
        return self.work / f"input-{k:05d}.parquet"

    def _bad_path(self, k: int) -> Path:
        return self.work / f"bad-{k:05d}.jsonl"

    def _part_path(self, k: int) -> Path:
        return self.work / f"cases-{k:05d}.parquet"

    # -- phase 1: stage -----------------------------------------------------------------------------

    def _items(self, state: JobState) -> Iterator[tuple[dict[str, Any], str, RawRecord]]:
        """(cursor after the item, source name, item) from the resume position on."""
        if self.store is not None:
            for after_id, item in self.store.iter_records(state.cursor.get("after_id")):
                yield {"after_id": after_id}, "store", item
            return
        first, consumed = state.cursor.get("source", 0), state.cursor.get("consumed", 0)
        for s in range(first, len(self.req.data)):
            skip = consumed if s == first else 0
            for item in iter_file(self.req.data[s], skip=skip):
                skip += 1
                yield {"source": s, "consumed": skip}, self.req.data[s].name, item

    def stage(self, state: JobState) -> None:
        """Phase 1: validate the input into shards of `checkpoint_every` items (resumable)."""
        if state.staged:
            return
        previous = load_previous_report(self.req.previous) if self.req.previous else None
        seen: set[str] = set()
        for s in state.shards:  # duplicate ids are checked across the whole input, also after a resume
            seen.update(pq.read_table(self._input_path(s.index), columns=["case_id"]).column(0).to_pylist())
        rows: list[dict[str, Any]] = []
        bad: list[dict[str, Any]] = []
        consumed = 0
        cursor = state.cursor
        bar = _bar(self.req.progress, "stage", unit="rec")
        for cursor, name, item in self._items(state):
            consumed += 1
            bar.update(1)
            if item.error is not None:
                bad.append(_bad_row(name, item.position, _id_of(item.data), item.error))
            elif item.data is not None:
                try:
                    row = stage_record(item.data, seq=state.next_seq + len(rows), source=name, line=item.position,
                                       previous=previous, human_confirmed=item.human_confirmed)
                except RecordError as exc:
                    bad.append(_bad_row(name, item.position, _id_of(item.data), str(exc)))
                else:
                    if row["case_id"] in seen:
                        bad.append(_bad_row(name, item.position, row["case_id"], "id: duplicate (an earlier record has it)"))
                    else:
                        seen.add(row["case_id"])
                        rows.append(row)
            if consumed >= self.req.checkpoint_every:
                self._flush_stage(state, rows, bad, cursor)
                rows, bad, consumed = [], [], 0
        if consumed:
            self._flush_stage(state, rows, bad, cursor)
        bar.close()
        state.staged = True
        self.checkpoint.save(state)
        logger.info("job %s: staged %d records in %d shards", self.job_id, state.next_seq, len(state.shards))

    def _flush_stage(self, state: JobState, rows: list[dict[str, Any]], bad: list[dict[str, Any]],
                     cursor: dict[str, Any]) -> None:
        k = len(state.shards)
        write_parquet_atomic(pa.Table.from_pylist(rows, schema=STAGED_SCHEMA), self._input_path(k))
        write_text_atomic(self._bad_path(k), "".join(json.dumps(b, ensure_ascii=False) + "\n" for b in bad))
        state.shards.append(ShardInfo(index=k, records=len(rows), bad=len(bad), first_seq=state.next_seq))
        state.next_seq += len(rows)
        state.cursor = dict(cursor)
        self.checkpoint.save(state)

    # -- phase 2: triage ----------------------------------------------------------------------------

    def process(self, state: JobState) -> int:
        """Run the engine over the shards not yet processed; returns the number of records triaged now."""
        todo = state.shards[state.processed:]
        total = sum(s.records for s in state.shards)
        done_before = sum(s.records for s in state.shards[:state.processed])
        bar = _bar(self.req.progress, "triage", unit="case", total=total, initial=done_before)
        processed_now = 0
        # Shards without valid records complete at once; the others when all their rows are back.
        pending = {s.index: [] for s in todo}  # type: dict[int, list[dict[str, Any]]]
        by_seq = [(s.first_seq, s.index) for s in todo if s.records]
        starts = [b[0] for b in by_seq]
        queue = list(todo)

        def commit_ready() -> None:
            nonlocal processed_now
            while queue and len(pending[queue[0].index]) == queue[0].records:
                shard = queue.pop(0)
                rows = sorted(pending.pop(shard.index), key=lambda r: r["seq"])
                self._commit_shard(state, shard, rows)
                processed_now += shard.records

        commit_ready()
        if by_seq:
            engine = self.make_engine(state.as_of)
            for batch in engine.run([self._input_path(k) for _, k in by_seq]):
                for row in batch:
                    pending[by_seq[bisect.bisect_right(starts, row["seq"]) - 1][1]].append(row)
                bar.update(len(batch))
                commit_ready()
        bar.close()
        if queue:
            raise RuntimeError(f"engine returned incomplete results for shards {[s.index for s in queue]}")
        return processed_now

    def _commit_shard(self, state: JobState, shard: ShardInfo, rows: list[dict[str, Any]]) -> None:
        table = pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)
        if self.req.apply:
            for key, n in self.store.apply(table).items():
                state.applied[key] = state.applied.get(key, 0) + n
        write_parquet_atomic(table.drop_columns(list(PAYLOAD_COLUMNS)), self._part_path(shard.index))
        state.processed = shard.index + 1
        self.checkpoint.save(state)

    # -- phase 3: report ----------------------------------------------------------------------------

    def report(self, state: JobState) -> ReportCounts:
        staged_bad: list[dict[str, Any]] = []
        for s in state.shards:
            text = self._bad_path(s.index).read_text(encoding="utf-8")
            staged_bad += [json.loads(line) for line in text.splitlines() if line]
        meta = {"job_id": self.job_id, "fingerprint": self.fingerprint, "model": self._model_version(),
                "rules_sha256": sha256_file(self.req.rules_path),
                "extractor": _extractor_version(self.req.ner, self.req.data_dir),
                "inputs": self.sources, "apply": self.req.apply, "applied": state.applied, "as_of": state.as_of}
        counts = write_report(self.out, [self._part_path(s.index) for s in state.shards], staged_bad, meta, self.sources)
        state.done = True
        self.checkpoint.save(state)
        for s in state.shards:  # the staged input holds petition text and personal data: not kept
            for p in (self._input_path(s.index), self._bad_path(s.index), self._part_path(s.index)):
                p.unlink(missing_ok=True)
        return counts

    def _model_version(self) -> str:
        m = load_manifest(self.req.model_dir)
        return f"{m.name}@{m.version}"

    def run(self) -> ReclassifySummary:
        t0 = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        state, resumed = self._open_state()
        if state.done:
            summary = json.loads((self.out / "summary.json").read_text(encoding="utf-8"))
            lines = [f"job {self.job_id} already complete in {self.out}: nothing to do "
                     f"({summary['processed']} processed, {summary['bad_records']} bad records, {summary['changed']} changed)"]
            return ReclassifySummary(self.job_id, self.out, None, lines, resumed=True, already_complete=True,
                                     applied=state.applied)
        if resumed:
            logger.info("job %s: resuming (%d shards staged, %d processed)", self.job_id, len(state.shards), state.processed)
        self.stage(state)
        t_proc = time.perf_counter()
        processed_now = self.process(state)
        t_proc = time.perf_counter() - t_proc
        counts = self.report(state)
        elapsed = time.perf_counter() - t0
        rss = _peak_rss_mb()
        summary = ReclassifySummary(
            self.job_id, self.out, counts, summary_lines(counts), resumed=resumed, processed_now=processed_now,
            elapsed_s=elapsed, rate_per_s=processed_now / t_proc if t_proc > 0 else 0.0, peak_rss_mb=rss,
            applied=dict(state.applied))
        run = {"job_id": self.job_id, "engine": self.req.engine, "workers": self.req.workers, "resumed": resumed,
               "processed_now": processed_now, "elapsed_s": round(elapsed, 2), "triage_s": round(t_proc, 2),
               "rate_per_s": round(summary.rate_per_s, 1), "peak_rss_mb": round(rss, 1)}
        write_text_atomic(self.out / "run.json", json.dumps(run, indent=2) + "\n")
        if self.store:
            self.store.finish(self.job_id, {"processed": counts.processed, "bad": counts.bad, "changed": counts.changed,
                                            **state.applied})
        return summary


def reclassify(req: ReclassifyRequest) -> ReclassifySummary:
    """Run (or resume) one re-classification job and write its change report to `req.out_dir`.

    Raises:
        ValueError: inconsistent options; JobConflictError: the directory holds another job.
        FileNotFoundError: missing input, model or rule file.
        TriageError: model/taxonomy mismatch, a stage not available.
    """
    job = ReclassifyJob(req)
    try:
        return job.run()
    except BaseException:
        if job.store is not None:  # job_runs shows it; the next run with the same options resumes it
            job.checkpoint.fail()
        raise


def _preflight(req: ReclassifyRequest) -> None:
    """Fail before any work when the model or rule file does not fit the taxonomy (workers load them again)."""
    from triage.rules import load_rules
    from triage.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(req.data_dir) if req.data_dir else load_taxonomy()
    load_manifest(req.model_dir).check_taxonomy(taxonomy)
    load_rules(taxonomy, req.rules_path)


def _id_of(data: dict[str, Any] | None) -> str | None:
    value = (data or {}).get("id")
    return value if isinstance(value, str) and value else None


def _bad_row(source: str, line: int, case_id: str | None, error: str) -> dict[str, Any]:
    return {"source": source, "line": line, "case_id": case_id, "stage": "input", "error": error}


def _bar(enabled: bool, desc: str, **kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(desc=desc, file=sys.stderr, disable=not enabled, dynamic_ncols=True, smoothing=0.1,
                mininterval=0.5, **kwargs)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children (pool workers), MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(own, children)
