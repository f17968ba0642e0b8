"""Train the duplicate linker (重复信访): the encoder's idf, the verifier, the decision threshold.

`triage train-linker` writes models/default/linker/ (or --out):

* `encoder.npz` — word TF-IDF idf per hash bucket (triage.linking.features.HashedTfidfEncoder),
  fitted on the written train split plus the public unlabelled/labelled/reply/Fuzhou messages
  (the hot messages used to evaluate same-issue pairs are excluded; dev and test never seen).
* `verifier.json` — logistic-regression coefficients over triage.linking.verifier.pair_features,
  fitted on pairs of the written train split (each re-submission with its original and with the
  other candidates the index returns for it — hard negatives, same-district and easy ones),
  Platt-calibrated and thresholded on the dev split (the lowest threshold reaching the target
  precision on dev).
* `manifest.json` — version, data file hashes, dims, thresholds, dev metrics.

Why this encoder (measured on the written splits, `python -m training.linking --compare`): for each
re-submission, rank of its original among all records of the split by cosine —
word TF-IDF (exact) recall@20 0.986 train / 1.000 dev; the same hashed to 512 dims 0.935 / 0.981;
character 1–3-gram TF-IDF 0.986 / 0.990 exact but 0.860 / 0.913 at 1024 hashed dims; LSA (SVD-256 of
character TF-IDF) 0.767 / 0.683. Re-submissions are reworded in another register, but they keep
the rare words (the company, the estate, the official): an idf-weighted word vector finds them,
a topic-level vector (LSA) mostly finds other petitions on the same topic.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.linking_eval import duplicate_metrics
from triage.linking.features import HashedTfidfEncoder, token_codes, word_tokens
from triage.text import normalize

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "data" / "corpus"
WRITTEN = CORPUS / "written"
PUBLIC = ROOT.parent / "shared" / "data" / "public"
PUBLIC_UNLABELLED = ("teddy2020_unlabeled.jsonl", "teddy2020_messages_labeled.jsonl", "teddy2020_replies.jsonl",
                     "fuzhou12345_rivers.jsonl")
HOT_MESSAGES = "teddy2020_hot_messages.jsonl"
ENCODER_BUCKETS = 1 << 18
ENCODER_DIM = 512
ENCODER_SEED = 1729


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def encoder_fit_texts(public_dir: Path = PUBLIC, written_dir: Path = WRITTEN) -> tuple[list[str], list[Path]]:
    """Texts the encoder's idf is fitted on, and the files they came from."""
    files = [written_dir / "train.jsonl"]
    texts = [r["text"] for r in read_jsonl(files[0])]
    hot_path = public_dir / HOT_MESSAGES
    hot = {r.get("id") for r in read_jsonl(hot_path)} if hot_path.exists() else set()
    for name in PUBLIC_UNLABELLED:
        p = public_dir / name
        if not p.exists():
            logger.warning("public file %s not found: encoder fitted without it", p)
            continue
        files.append(p)
        texts.extend(r["text"] for r in read_jsonl(p) if r.get("text") and r.get("id") not in hot)
    return texts, files


def fit_encoder(texts: Iterable[str], *, buckets: int = ENCODER_BUCKETS, dim: int = ENCODER_DIM,
                seed: int = ENCODER_SEED, version: str = "hwtfidf") -> HashedTfidfEncoder:
    """Fit the idf of a HashedTfidfEncoder (smooth idf, as scikit-learn's) on normalised texts.

    The idf is rounded through float16, the precision it is stored in, so a trained encoder and
    the one loaded from disk give identical vectors.
    """
    df = np.zeros(buckets, dtype=np.int64)
    n = 0
    for t in texts:
        codes = token_codes(word_tokens(normalize(t)))
        if codes.size:
            df[np.unique((codes % np.uint64(buckets)).astype(np.int64))] += 1
        n += 1
    idf = (np.log((1 + n) / (1 + df)) + 1).astype(np.float16).astype(np.float32)
    logger.info("encoder idf fitted on %d texts (%d buckets used)", n, int((df > 0).sum()))
    return HashedTfidfEncoder(idf=idf, dim=dim, seed=seed, version=f"{version}{dim}")


def retrieval_ranks(encoder: HashedTfidfEncoder, rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """For every re-submission of `rows`, how many other records rank above its original (0 = top)."""
    pos = {r["id"]: i for i, r in enumerate(rows)}
    emb = encoder.encode([normalize(r["text"]) for r in rows])
    sims = emb @ emb.T
    np.fill_diagonal(sims, -1.0)
    ranks = [int((sims[pos[r["id"]]] > sims[pos[r["id"]], pos[r["duplicate_of"]]]).sum())
             for r in rows if r.get("duplicate_of") in pos]
    return np.asarray(ranks)


# --- corpus → petitions, entities, groups ---------------------------------------------------------

SECRET = b"train-linker"  # petitioner keys only need to match within one training/evaluation run


def make_extractor(ner: bool = True) -> Any:
    """The served entity extractor (patterns + gazetteer + LAC NER when `ner`)."""
    from triage.entities import EntityExtractor
    from triage.taxonomy import load_taxonomy

    tagger = None
    if ner:
        from serving.ner import word_tagger

        tagger = word_tagger()  # the service's default word tagger (TRIAGE_NER_ENGINE)
    return EntityExtractor(load_taxonomy().gazetteer, tagger)


def to_petition(row: dict[str, Any]) -> Any:
    """A Petition from a corpus or public row (gold fields ignored; public times get +08:00)."""
    from datetime import datetime, timedelta, timezone

    from triage.schemas import Petition

    at = row.get("submitted_at")
    if at is None and row.get("time"):
        raw = str(row["time"]).replace("/", "-")
        at = datetime.strptime(raw if ":" in raw else raw + " 00:00:00", "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=timezone(timedelta(hours=8)))
    pet = row.get("petitioner") or None
    return Petition(id=str(row["id"]), text=row["text"], submitted_at=at, petitioner=pet, title=row.get("title"))


@dataclass
class Prepared:
    """Petitions of one file with their entities (normalised text in petition.text)."""

    rows: list[dict[str, Any]]
    petitions: list[Any]
    entities: list[Any]

    def by_id(self) -> dict[str, int]:
        return {p.id: i for i, p in enumerate(self.petitions)}


def prepare(rows: Sequence[dict[str, Any]], extractor: Any, cache: Path | None = None) -> Prepared:
    """Petitions and extracted entities, cached per (extractor version, text) in `cache` (JSONL)."""
    import hashlib

    from triage.schemas import Entities

    cached: dict[str, Any] = {}
    if cache is not None and cache.exists():
        for line in cache.read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            cached[d["k"]] = d["e"]
    petitions = [to_petition(r) for r in rows]
    entities = []
    new = 0
    for p in petitions:
        k = hashlib.sha256(f"{extractor.version}\n{p.text}".encode()).hexdigest()[:24]
        if k in cached:
            entities.append(Entities.model_validate(cached[k]))
            continue
        e = extractor.extract(p.text, p)
        cached[k] = e.model_dump(mode="json")
        entities.append(e)
        new += 1
    if cache is not None and new:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with cache.open("w", encoding="utf-8") as fh:
            for k, e in cached.items():
                fh.write(json.dumps({"k": k, "e": e}, ensure_ascii=False) + "\n")
    logger.info("prepared %d records (%d extracted, %d cached)", len(petitions), new, len(petitions) - new)
    return Prepared(list(rows), petitions, entities)


def duplicate_groups(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Record id → id of its re-submission group (union of duplicate_of links)."""
    parent: dict[str, str] = {str(r["id"]): str(r["id"]) for r in rows}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for r in rows:
        d = r.get("duplicate_of")
        if d and str(d) in parent:
            parent[find(str(r["id"]))] = find(str(d))
    return {k: find(k) for k in parent}


def history_split(rows: Sequence[dict[str, Any]], salt: str = "history-v1") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(history, evaluated) for `triage evaluate --history` from one split of the written corpus.

    Evaluated: every re-submission (duplicate_of = an earlier record), every hard negative that no
    record points to, and half of the remaining records that no one points to (new matters, chosen
    by a hash of the id). History: everything else, so every gold original is an existing case and
    the evaluated records are not. Evaluated records keep `duplicate_of` (null for the new ones).
    """
    import hashlib

    pointed = {str(r["duplicate_of"]) for r in rows if r.get("duplicate_of")}
    history, evaluated = [], []
    for r in rows:
        rid = str(r["id"])
        if r.get("duplicate_of"):
            evaluated.append(r)
        elif rid in pointed:
            history.append(r)
        elif r.get("hard_negative_of") or hashlib.sha256(f"{salt}:{rid}".encode()).digest()[0] < 128:
            evaluated.append(r)
        else:
            history.append(r)
    return history, evaluated


# --- pairs, verifier fit, threshold ----------------------------------------------------------------

@dataclass
class Pairs:
    """Verifier inputs for a set of (query, candidate) pairs."""

    query: list[str]
    candidate: list[str]
    features: list[dict[str, float]]
    label: np.ndarray


def placeholder_verifier() -> Any:
    from triage.linking.verifier import FEATURES, LinkVerifier

    n = len(FEATURES)
    return LinkVerifier(features=FEATURES, mean=np.zeros(n), scale=np.ones(n), coef=np.zeros(n), intercept=0.0,
                        platt_a=1.0, platt_b=0.0, threshold=0.5, version="untrained")


def build_linker(encoder: HashedTfidfEncoder, prep: Prepared, ids: Iterable[str] | None = None,
                 verifier: Any = None) -> Any:
    """A CaseLinker over a fresh MemoryCaseIndex holding the records `ids` of `prep` (all when None)."""
    from triage.linking.features import LinkFeaturizer
    from triage.linking.linker import CaseLinker
    from triage.linking.memory import MemoryCaseIndex

    linker = CaseLinker(MemoryCaseIndex(), LinkFeaturizer(encoder), verifier or placeholder_verifier(), secret=SECRET)
    keep = None if ids is None else set(ids)
    for p, e in zip(prep.petitions, prep.entities, strict=True):
        if keep is None or p.id in keep:
            linker.register(p, p.text, e)
    return linker


def collect_pairs(linker: Any, prep: Prepared, query_ids: Iterable[str], same: dict[str, str],
                  force: dict[str, list[str]] | None = None) -> Pairs:
    """Candidate pairs of each query with labels (same re-submission group = 1).

    `force` adds named candidates (gold originals, hard negatives) that retrieval missed, so the
    verifier also learns from pairs the candidate stage let through only sometimes.
    """
    from triage.linking.linker import petition_keys
    from triage.linking.verifier import add_query_context, pair_features

    pos = prep.by_id()
    out = Pairs([], [], [], np.zeros(0))
    labels: list[int] = []
    for qid in query_ids:
        i = pos[qid]
        p, e = prep.petitions[i], prep.entities[i]
        snaps = linker.candidates(p, p.text, e)
        have = {s.case_id for s in snaps}
        extra = [c for c in (force or {}).get(qid, []) if c not in have and c != qid]
        snaps += linker.index.snapshots(extra)
        q = linker.view(p.text, e, petition_keys(p.petitioner, e, linker.secret), p.submitted_at)
        feats = [pair_features(q, linker.view_of_snapshot(s)) for s in snaps]
        add_query_context(feats)
        for s, f in zip(snaps, feats, strict=True):
            out.query.append(qid)
            out.candidate.append(s.case_id)
            out.features.append(f)
            labels.append(int(same.get(qid) is not None and same.get(qid) == same.get(s.case_id)))
    out.label = np.asarray(labels)
    return out


def fit_verifier(train: Pairs, *, c: float = 1.0, version: str = "v1", features: Sequence[str] | None = None) -> Any:
    """Standardised L2 logistic regression on the train pairs (calibration and threshold come later)."""
    from sklearn.linear_model import LogisticRegression

    from triage.linking.verifier import FEATURES, LinkVerifier

    names = tuple(features or FEATURES)
    x = np.asarray([[f[n] for n in names] for f in train.features], dtype=np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=c, max_iter=2000)
    lr.fit((x - mean) / scale, train.label)
    return LinkVerifier(features=names, mean=mean, scale=scale, coef=lr.coef_[0].astype(np.float64),
                        intercept=float(lr.intercept_[0]), platt_a=1.0, platt_b=0.0, threshold=0.5, version=version)


def platt_fit(margin: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """Platt scaling (a, b): p = sigmoid(a * margin + b), fitted by (nearly unregularised) logistic regression."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000).fit(margin.reshape(-1, 1), label)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def out_of_fold(encoder: HashedTfidfEncoder, prep: Prepared, train_pairs: Pairs, groups: dict[str, str], *,
                c: float, folds: int = 5) -> tuple[np.ndarray, Pairs, dict[str, str | None]]:
    """Evaluation-protocol pairs of the train split scored by verifiers that never saw their query's group."""
    import hashlib

    _, pairs, gold = split_pairs(encoder, prep)
    fold_of = {g: hashlib.sha256(f"fold:{g}".encode()).digest()[0] % folds for g in set(groups.values())}
    margin = np.zeros(len(pairs.label))
    pair_fold = np.asarray([fold_of[groups[q]] for q in pairs.query])
    train_fold = np.asarray([fold_of[groups[q]] for q in train_pairs.query])
    for k in range(folds):
        keep = np.flatnonzero(train_fold != k)
        sub = Pairs([train_pairs.query[i] for i in keep], [train_pairs.candidate[i] for i in keep],
                    [train_pairs.features[i] for i in keep], train_pairs.label[keep])
        v = fit_verifier(sub, c=c)
        idx = np.flatnonzero(pair_fold == k)
        margin[idx] = v.margin(v.matrix([pairs.features[i] for i in idx]))
    return margin, pairs, gold


def top_links(pairs: Pairs, probs: np.ndarray) -> dict[str, tuple[str, float]]:
    """Query id → (best candidate, probability)."""
    best: dict[str, tuple[str, float]] = {}
    for q, cnd, p in zip(pairs.query, pairs.candidate, probs, strict=True):
        if q not in best or p > best[q][1]:
            best[q] = (cnd, float(p))
    return best


def sweep_thresholds(gold: dict[str, str | None], best: dict[str, tuple[str, float]],
                     grid: Sequence[float] | None = None) -> list[dict[str, float | int]]:
    grid = grid if grid is not None else [round(t, 3) for t in np.arange(0.05, 0.99, 0.01)]
    rows = []
    for t in grid:
        pred = {q: (best[q][0] if q in best and best[q][1] >= t else None) for q in gold}
        rows.append({"threshold": float(t), **duplicate_metrics(gold, pred)})
    return rows


def choose_threshold(sweep: Sequence[dict[str, float | int]], min_precision: float) -> dict[str, float | int]:
    """The dev threshold: best F1 among thresholds reaching `min_precision` (else best F1 overall)."""
    ok = [r for r in sweep if r["precision"] >= min_precision and r["tp"] > 0]
    pool = ok or list(sweep)
    return max(pool, key=lambda r: (r["f1"], r["recall"], -r["threshold"]))


# --- the command ---------------------------------------------------------------------------------

CACHE = ROOT / "var" / "linker"
DEFAULT_OUT = ROOT / "models" / "default" / "linker"


def split_pairs(encoder: HashedTfidfEncoder, prep: Prepared, verifier: Any = None) -> tuple[Any, Pairs, dict[str, str | None]]:
    """Evaluation-protocol pairs of one split: history indexed, evaluated records queried; gold per query."""
    history, evaluated = history_split(prep.rows)
    linker = build_linker(encoder, prep, [str(r["id"]) for r in history], verifier)
    gold = {str(r["id"]): (str(r["duplicate_of"]) if r.get("duplicate_of") else None) for r in evaluated}
    pairs = collect_pairs(linker, prep, list(gold), {q: g for q, g in gold.items() if g} | {g: g for g in gold.values() if g})
    return linker, pairs, gold


def train_linker(out_dir: Path = DEFAULT_OUT, *, ner: bool = True, c: float = 1.0, min_precision: float = 0.95,
                 public_dir: Path = PUBLIC) -> dict[str, Any]:
    """Fit encoder and verifier on the written train split, calibrate and threshold on dev; write out_dir."""
    import datetime as dt
    import time

    from triage.manifest import sha256_file

    t0 = time.perf_counter()
    texts, enc_files = encoder_fit_texts(public_dir)
    encoder = fit_encoder(texts)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder.save(out_dir / "encoder.npz")
    extractor = make_extractor(ner)
    splits = {s: read_jsonl(WRITTEN / f"{s}.jsonl") for s in ("train", "dev")}
    prep = {s: prepare(rows, extractor, CACHE / f"entities-{s}.jsonl") for s, rows in splits.items()}
    # train: every record queries all other train records (candidates are earlier ones only)
    groups = duplicate_groups(splits["train"])
    force = {str(r["id"]): [str(r[k]) for k in ("duplicate_of", "hard_negative_of") if r.get(k)] for r in splits["train"]}
    tr_linker = build_linker(encoder, prep["train"])
    train_pairs = collect_pairs(tr_linker, prep["train"], [str(r["id"]) for r in splits["train"]], groups, force)
    logger.info("train pairs %d (positive %d)", len(train_pairs.label), int(train_pairs.label.sum()))
    verifier = fit_verifier(train_pairs, c=c, version=f"v{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}")
    # Calibration and threshold: the evaluation protocol (history indexed, evaluated records queried)
    # on dev (final verifier) and, out of fold, on train (5 group folds, verifier refitted without the
    # fold's queries) — 5× more re-submissions than dev alone, so the threshold is less noisy.
    _, dev_pairs, dev_gold = split_pairs(encoder, prep["dev"])
    oof_margin, oof_pairs, oof_gold = out_of_fold(encoder, prep["train"], train_pairs, groups, c=c)
    dev_margin = verifier.margin(verifier.matrix(dev_pairs.features))
    a, b = platt_fit(np.concatenate([oof_margin, dev_margin]), np.concatenate([oof_pairs.label, dev_pairs.label]))
    verifier = type(verifier)(**{**verifier.__dict__, "platt_a": a, "platt_b": b})
    probs = verifier.probability(verifier.matrix(dev_pairs.features))
    oof_probs = 1.0 / (1.0 + np.exp(-(a * oof_margin + b)))
    best = top_links(dev_pairs, probs) | {f"train:{q}": v for q, v in top_links(oof_pairs, oof_probs).items()}
    both_gold = dev_gold | {f"train:{q}": g for q, g in oof_gold.items()}
    chosen = choose_threshold(sweep_thresholds(both_gold, best), min_precision)
    threshold = float(chosen["threshold"])
    verifier = type(verifier)(**{**verifier.__dict__, "threshold": threshold})
    verifier.save(out_dir / "verifier.json")
    issue = train_issue_model(train_pairs, dev_pairs, encoder, c=c, version=verifier.version, public_dir=public_dir, ner=ner)
    issue.save(out_dir / "issue.json")
    dev_at = sweep_thresholds(dev_gold, top_links(dev_pairs, probs), [threshold])[0]
    oof_at = sweep_thresholds(oof_gold, top_links(oof_pairs, oof_probs), [threshold])[0]
    dev_retrieval = {q: g in set(c for qq, c in zip(dev_pairs.query, dev_pairs.candidate, strict=True) if qq == q)
                     for q, g in dev_gold.items() if g}
    ece = calibration_error(probs, dev_pairs.label)
    data_files = [*enc_files, WRITTEN / "dev.jsonl"]
    manifest = {
        "name": "linker", "version": verifier.version, "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "encoder": {"kind": "hashed-word-tfidf", "version": encoder.version, "dim": encoder.dim, "buckets": encoder.buckets,
                    "fit_texts": len(texts)},
        "featurizer": {"minhash_perm": 128, "bands": 32, "rows": 4, "shingle": 3},
        "verifier": {"features": list(verifier.features), "C": c, "train_pairs": len(train_pairs.label),
                     "train_positive": int(train_pairs.label.sum()), "platt": {"a": a, "b": b}},
        "threshold": {"value": verifier.threshold,
                      "rule": f"best F1 with precision >= {min_precision} on dev + out-of-fold train (evaluation protocol)"},
        "train_out_of_fold": {"duplicates": {k: oof_at[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn", "n")}},
        "dev": {"duplicates": {k: dev_at[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn", "n")},
                "candidate_recall": round(float(np.mean(list(dev_retrieval.values()))), 4),
                "pairs": len(dev_pairs.label), "pair_ece": round(ece, 4)},
        "extractor": extractor.version,
        "issue_model": {"features": list(issue.features), "threshold": issue.threshold,
                        "rule": "silver same-issue pairs of the hot messages (>= 3 teams, read pairs excluded); "
                                "Platt and best-F1 threshold out of fold (training/linking_hotspots.py)"},
        "artifacts": {name: sha256_file(out_dir / name) for name in ("encoder.npz", "verifier.json", "issue.json")},
        "data_files": [{"path": display(p), "sha256": sha256_file(p)} for p in data_files],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return manifest


def train_issue_model(train_pairs: Pairs, dev_pairs: Pairs, encoder: HashedTfidfEncoder, *, c: float, version: str,
                      public_dir: Path, ner: bool) -> Any:
    """The same-issue pair model for hotspots: context-free features only (no per-query ranking, no repeat cue).

    With the public hot messages at hand it is fitted on their silver same-issue pairs (read pairs
    excluded; training/linking_hotspots.py), else on the written corpus pairs (re-submissions vs
    hard negatives), which transfer poorly to different petitioners writing about one issue.
    """
    from triage.linking.verifier import ISSUE_FEATURES

    if (public_dir / HOT_MESSAGES).exists():
        from training.linking_hotspots import fit_issue_model

        return fit_issue_model(encoder, c=c, version=f"issue-{version}", public_dir=public_dir, ner=ner)
    issue = fit_verifier(train_pairs, c=c, version=f"issue-{version}", features=ISSUE_FEATURES)
    a, b = platt_fit(issue.margin(issue.matrix(dev_pairs.features)), dev_pairs.label)
    return type(issue)(**{**issue.__dict__, "platt_a": a, "platt_b": b, "threshold": 0.5})


def calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error with equal-width bins."""
    idx = np.minimum((probs * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            err += m.mean() * abs(float(probs[m].mean()) - float(labels[m].mean()))
    return err


def display(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        try:
            return str(p.resolve().relative_to(ROOT.parent))
        except ValueError:
            return str(p)
