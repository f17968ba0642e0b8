"""Train the organisation tagger (triage/orgs.py) on the written corpus (shipped: TRAIN+DEV), choose out-of-fold.

    .venv/bin/python -m training.orgs --method crf --c1 0 --c2 0.01 --bits 16 --fit train+dev   # the shipped orgs-6
    .venv/bin/python -m training.orgs --method crf --c1 0 --c2 0.01 --bits 16 --fit train+dev --sequence-weight 0 \
        --out var/org_tagger_orgs5.npz   # orgs-5 (the CRF alone; orgs-6's CRF part is these weights exactly)
    .venv/bin/python -m training.orgs --method crf --c1 0 --c2 0.01 --bits 16 --fit train+dev --no-states   # orgs-3
    .venv/bin/python -m training.orgs [--method crf --c1 0 --c2 0.01] [--bits 16] [--fit train|train+dev]
        [--states|--no-states] [--state-c 0.01] [--out PATH]

orgs-6 (issue 6, session 15): orgs-5's CRF, unchanged, plus a neural sequence layer (training/orgs_neural.py,
triage/orgs.SequenceLayer): a ReLU projection of the same inputs as dense vectors (character embedding, LAC word label
and position, candidate channels and lexicon as one-hots, LAC's 256 encoder states) and two width-3 convolutions of
128 channels per clause chunk, trained with its own CRF loss (torch, 6 epochs) on written train+dev plus the
organisation supplement (data/corpus/supplement; the supplement had not helped the CRF, session 14), its five scores
and transitions added to the CRF's at weight 2. Served with numpy, and only on chunks that touch an organisation
candidate. Chosen out-of-fold (`python -m training.experiments.org_neural --crf DIR --supplement --arch cnn --hidden
64 --proj 128`, the fold CRFs of `org_oof --states --save-taggers DIR`): pooled 0.8652 → 0.8731 / 0.8754 / 0.8747 at
weight 1 / 2 / 3, every fold up at 2 (0.8701 → 0.8819, 0.8751 → 0.8814, 0.8734 → 0.8774, 0.8497 → 0.8661, 0.8585 →
0.8704). Compared in the same way (README.md, "Organisations, orgs-6"): a BiLSTM instead of the convolutions, with and
without the supplement and the real messages read for organisations, and a span reranker over the CRF's marginals.

orgs-5 (issue 6, session 12): the same with the state layer's inverse L2 penalty C 1 → 0.01. Out-of-fold, same 5
folds, all run in session 12 (`python -m training.experiments.org_oof --states --state-c C`): pooled 0.8599 / 0.8596 /
0.8618 / 0.8626 / 0.8636 / 0.8626 for C = 10 / 1 / 0.1 / 0.03 / 0.01 / 0.003; at 0.01 four folds of five up
(0.858 → 0.865, 0.877 → 0.876, 0.863 → 0.870, 0.849 → 0.851, 0.853 → 0.857). On written test, scored once after the
choice with orgs-4 in the same run, it did not carry over: organisation exact F1 0.833 → 0.830 (recall 0.807 → 0.799,
precision 0.860 → 0.863) — within noise both ways. Tried the same session and not used (pooled out-of-fold): the
neighbours' layer probabilities (±1 character) as CRF features, 0.8587 at C 0.01 (vs 0.8636 without); a one-hidden-layer
MLP state layer (64 ReLU units, L2 0.01, scikit-learn Adam, 30 epochs) instead of the logistic regression, 0.8562 (vs
0.8596 for the regression at C 1, the setting then) — though alone on fold 0 it tagged characters better (micro F1
of B/I/E/S 0.873 vs 0.827).

orgs-4 (issue 6, session 11): the CRF also reads LAC's pretrained encoder — the second BiGRU's 256 states per
character (serving/ner.py `words_states`, from the same encoder run as the words). A logistic regression from the
state to the gold BIOES tag (the state layer, triage/orgs.StateLayer) gives five probabilities per character, which
the CRF weighs like its other features; a training record sees the layer fitted on the other lexicon folds
(stacking), served records the layer fitted on all. Out-of-fold organisation exact F1 over written train+dev
(`python -m training.experiments.org_oof [--states]`, the same 5 folds, both in session 11): every fold up —
0.856 → 0.858, 0.867 → 0.877, 0.855 → 0.863, 0.831 → 0.849, 0.844 → 0.853; pooled 0.850 → 0.860 (tp 2090 → 2125,
fp 276 → 268, fn 461 → 426). Tried first on fold 0 with a scratch harness (states rounded to float16, where this
layer gave 0.865 — so a fold moves by ±0.007 with such details) and not used: the 256 states reduced by PCA to 32
dimensions straight into the CRF 0.859, the layer's probabilities ×3 0.857. orgs-3 stays beside it
(models/entities/org_tagger_words.npz) for word taggers without states (the fast engine).

orgs-3 (issue 6): dev-chosen gains had not carried to test, so the choice was made by out-of-fold organisation
exact F1 through the whole extractor (tagger and its lexicon fitted on the other folds, convention_orgs etc. as
served) over written train+dev, 5 folds by `group`
(sha256 of "oof:" + group): 0.850 ± 0.014 across folds, pooled 0.850 (the orgs-2 configuration;
`python -m training.experiments.org_oof`). Learning curve (fold 0, tagger fitted on a share of
the other folds' groups): 50% 0.841, 75% 0.852, 100% 0.856, so more data helps and the shipped tagger is fitted on
train+dev (≈20% more records than train alone; expected gain +0.002 to +0.004 by the log-linear slope of the curve).
Tried and not used: word-cluster features (PPMI-SVD of ±2 LAC-word contexts over the unlabelled public texts and the
written train+dev texts, k-means at 32/128/512; cluster of the covering word × word position, neighbours' clusters):
fold 0 0.847 vs 0.856 without. With --fit train+dev the card's dev figures are in-sample.

A linear-chain CRF (python-crfsuite, the `train` extra; default) or an averaged structured perceptron
over BIOES tags, on the hashed features of triage/orgs.py; the CRF weights are copied into the numpy
tagger, so serving needs neither. Inputs per record are the served extractor's own:
normalised text, LAC words (serving/ner.py), and the rule candidates (`EntityExtractor.org_marks`).
Gold: the record's `org` spans. Penalties (CRF) and epochs (perceptron) were chosen by DEV organisation
F1 (exact span, through the whole extractor, i.e. with triage.entities.convention_orgs added where the
tagger finds nothing); the test split is never read here. Deterministic: records
are visited in a fixed seeded order. Writes the weights and a JSON card beside them (dev figures,
epochs, data hashes, sha256 of the weights; the previous card's `out_of_fold` figures are kept when version,
command and data are the same).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from triage.entities import EXTRACTOR_VERSION, ORG_TAGGER_PATH, ORG_TAGGER_WORDS_PATH, EntityExtractor
from triage.orgs import _ALLOWED, TAGS, Lexicon, OrgTagger, StateLayer, spans_to_tags
from triage.schemas import Petition
from triage.taxonomy import load_taxonomy
from triage.words import WordTagger

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "data/corpus/written"
REAL = ROOT / "data/corpus/real"
SUPPLEMENT = ROOT / "data/corpus/supplement"
# feature augmentation by domain (train_crf augment): the prefix of each domain's copy of a feature; hashed features
# are digits and state-layer features start with "s", so a prefix is never ambiguous
DOMAIN_PREFIX = {"written": "w", "real": "r", "supplement": "u"}
CACHE = ROOT / "var/cache/orgs"
VERSION = "orgs-5"  # 4: + the state layer over LAC's encoder states (--states, the default); 5: its penalty C 1 → 0.01
SEQUENCE_VERSION = "orgs-6"  # orgs-5 + the neural sequence layer (training/orgs_neural.py) at SEQUENCE_WEIGHT
SEQUENCE_WEIGHT = 2.0  # out-of-fold (training.experiments.org_neural, session 15: 1 / 2 / 3 → 0.8731 / 0.8754 / 0.8747)
SEQUENCE = {"arch": "cnn", "hidden": 64, "proj": 128, "epochs": 6, "data": "written+supplement"}
# (both chosen out-of-fold)
STATE_C = 0.01  # the state layer's inverse L2 penalty (orgs-5; out-of-fold over 10/1/0.1/0.03/0.01/0.003)
WORDS_VERSION = "orgs-3"  # without states (--no-states; models/entities/org_tagger_words.npz, for the fast engine)
# 2: L2 penalty 0.01 (dev org F1 with convention_orgs: 0.8551 vs 0.8505 at 0.1)
# 3: the same features and penalties fitted on written train+dev (--fit train+dev; chosen out-of-fold, see above)


@dataclass
class Example:
    id: str
    group: str
    text: str
    words: list[tuple[int, int, str]]
    marks: dict[str, list[tuple[int, int]]]
    gold: list[tuple[int, int]]
    chunks: list[tuple[int, int]]
    states: np.ndarray | None = None  # LAC's encoder states (len(text), 256) when loaded with states=True
    domain: str = "written"  # a key of DOMAIN_PREFIX: "real" for a real public message read for organisations only


def _gold_orgs(rec: dict[str, Any]) -> list[tuple[int, int]]:
    spans = sorted({(int(e["start"]), int(e["end"])) for e in rec.get("entities") or [] if e.get("type") == "org"},
                   key=lambda s: (s[0] - s[1], s[0]))
    kept: list[tuple[int, int]] = []
    for s, e in spans:  # longest first; nested or crossing spans cannot both be BIOES tags
        if not any(s < ke and ks < e for ks, ke in kept):
            kept.append((s, e))
    return sorted(kept)


def load_examples(split: str, extractor: EntityExtractor, lac: Any, states: bool = False) -> list[Example]:
    """Records of data/corpus/written/SPLIT.jsonl with LAC words cached under var/cache/orgs/ (per LAC version).

    `states`: also LAC's encoder states per character (`lac.words_states`; not cached: ~0.5 GB for train+dev,
    recomputed in ~30 s)."""
    path = CORPUS / f"{split}.jsonl"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cache = CACHE / f"{split}-{digest}-{lac.version}.pkl"
    records = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    texts = [Petition.model_validate({k: r[k] for k in ("text", "title") if k in r}).text for r in records]
    states_all: list[np.ndarray | None] = [None] * len(texts)
    if states:
        pairs = [lac.words_states(t) for t in texts]
        words_all = [w for w, _ in pairs]
        states_all = [st for _, st in pairs]
    elif cache.exists():
        words_all = pickle.loads(cache.read_bytes())
    else:
        words_all = [lac.words(t) for t in texts]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(words_all))
    out = []
    for rec, text, words, st in zip(records, texts, words_all, states_all, strict=True):
        places = extractor._places(text)
        marks = extractor.org_marks(text, words, places)
        group = str(rec.get("group") or rec["id"])
        out.append(Example(str(rec["id"]), group, text, words, marks, _gold_orgs(rec), OrgTagger.chunks(text), st))
    return out


def _files_sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _answer_rows(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """The JSON lines of organisation answer files by id; an id answered twice (in one file or two) is an error."""
    rows: dict[str, dict[str, Any]] = {}
    for path in paths:
        for lineno, line in enumerate(path.open(encoding="utf-8"), 1):
            if line.strip():
                row = json.loads(line)
                if row["id"] in rows:
                    raise ValueError(f"{path.name}:{lineno}: {row['id']} is answered in another line or file")
                rows[row["id"]] = row
    return rows


def real_files() -> list[Path]:
    return sorted(REAL.glob("orgs_*.jsonl"))


def supplement_files() -> list[Path]:
    return sorted(SUPPLEMENT.glob("orgs_W*.jsonl"))


def real_answers(paths: list[Path] | None = None) -> dict[str, list[str]]:
    """Organisation answers for real public messages (default: all data/corpus/real/orgs_*.jsonl; real/ORGS.md):
    id → surfaces."""
    rows = _answer_rows(real_files() if paths is None else paths)
    return {rid: list(row["orgs"]) for rid, row in rows.items()}


def load_real_examples(extractor: EntityExtractor, lac: Any, states: bool = False,
                       answers: dict[str, list[str]] | None = None) -> list[Example]:
    """Real public messages of the real TRAIN split read for organisations only (real/ORGS.md): extra training text
    for the tagger, never scored. Texts come from ../shared/data/public (training.corpus.materialize_real), so the
    answers carry ids only; a surface that no longer occurs in its text is an error, not a silent skip."""
    from training.corpus import materialize_real, real_splits

    answers = real_answers() if answers is None else answers
    if not answers:
        return []
    train = {r["id"]: r for r in real_splits(materialize_real())["train"]}
    outside = sorted(set(answers) - set(train))
    if outside:
        raise ValueError(f"{len(outside)} answered messages are not in the real train split, e.g. {outside[0]}")
    texts = {rid: (train[rid]["text"], "real:" + str(train[rid]["group"])) for rid in answers}
    return _answer_examples(texts, answers, "real", extractor, lac, states)


def supplement_answers(paths: list[Path] | None = None) -> dict[str, tuple[str, list[str]]]:
    """The organisation supplement (default: all data/corpus/supplement/orgs_W*.jsonl; supplement/SUPPLEMENT.md):
    id → (text, surfaces)."""
    rows = _answer_rows(supplement_files() if paths is None else paths)
    return {rid: (row["text"], list(row["orgs"])) for rid, row in rows.items()}


def load_supplement_examples(extractor: EntityExtractor, lac: Any, states: bool = False,
                             paths: list[Path] | None = None, domain: str = "written") -> list[Example]:
    """Written petitions of the organisation supplement (never corpus records, never scored): extra training text
    written to the written corpus's convention, so of the written domain unless `domain` = "supplement" (its own
    copies under feature augmentation)."""
    rows = supplement_answers(paths)
    texts = {rid: (text, "sup:" + rid) for rid, (text, _) in rows.items()}
    return _answer_examples(texts, {rid: orgs for rid, (_, orgs) in rows.items()}, domain, extractor, lac, states)


def _answer_examples(texts: dict[str, tuple[str, str]], answers: dict[str, list[str]], domain: str,
                     extractor: EntityExtractor, lac: Any, states: bool) -> list[Example]:
    from training.corpus import entity_spans

    out = []
    for rid in sorted(answers):
        raw, group = texts[rid]
        text = Petition.model_validate({"text": raw}).text
        spans, missing = entity_spans(text, [["org", s] for s in answers[rid]])
        if missing:
            raise ValueError(f"{rid}: {missing[0]!r} does not occur in the normalised text")
        words, st = lac.words_states(text) if states else (lac.words(text), None)
        marks = extractor.org_marks(text, words, extractor._places(text))
        out.append(Example(rid, group, text, words, marks, _gold_orgs({"entities": spans}), OrgTagger.chunks(text), st,
                           domain=domain))
    return out


def _transition_counts(tags: np.ndarray, chunks: list[tuple[int, int]]) -> np.ndarray:
    counts = np.zeros((len(TAGS), len(TAGS)), dtype=np.float32)
    for s, e in chunks:
        if e - s > 1:
            np.add.at(counts, (tags[s:e - 1], tags[s + 1:e]), 1)
    return counts


def build_lexicon(examples: list[Example]) -> Lexicon:
    """Gold organisation surfaces (≥ 2 characters) with the bucketed share of their occurrences that are tagged."""
    tagged: dict[str, int] = {}
    for x in examples:
        for s, e in x.gold:
            if e - s >= 2:
                tagged[x.text[s:e]] = tagged.get(x.text[s:e], 0) + 1
    seen = dict.fromkeys(tagged, 0)
    for x in examples:
        for name in seen:
            seen[name] += x.text.count(name)
    return Lexicon({name: Lexicon.bucket(tagged[name] / max(seen[name], tagged[name])) for name in tagged})


def _fold(group: str, folds: int) -> int:
    return int(hashlib.sha256(group.encode()).hexdigest(), 16) % folds


def _empty(bits: int, lexicon: Lexicon) -> OrgTagger:
    n = len(TAGS)
    return OrgTagger(np.zeros((1 << bits, n), dtype=np.float32), np.zeros((n, n), dtype=np.float32), bits, WORDS_VERSION, lexicon)


def train(examples: list[Example], epochs: int, bits: int, seed: int = 0, folds: int = 5,
          on_epoch: Any = None) -> OrgTagger:
    """Averaged perceptron; `on_epoch(epoch, tagger)` sees the averaged model after each epoch.

    A training record sees the lexicon built from the other folds (groups of linked records stay in one
    fold), so the weights learn how far a lexicon hit on an unseen record can be trusted.
    """
    tagger = _empty(bits, build_lexicon(examples))
    fold_of = [_fold(x.group, folds) for x in examples]
    lexicons = [build_lexicon([x for x, f in zip(examples, fold_of, strict=True) if f != k]) for k in range(folds)]
    feats = [tagger.features(x.text, x.words, x.marks, lexicons[f]) for x, f in zip(examples, fold_of, strict=True)]
    gold = [_gold_tags(x) for x in examples]
    w, trans = tagger.weights_, tagger.transitions_
    u_w = np.zeros_like(w)
    u_t = np.zeros_like(trans)
    rng = np.random.default_rng(seed)
    c = 1.0
    for epoch in range(1, epochs + 1):
        for i in rng.permutation(len(examples)):
            x, f, g = examples[i], feats[i], gold[i]
            tagger._trans = np.where(_ALLOWED, trans, -1e9).astype(np.float32)
            p = tagger.decode(w[f].sum(axis=1), x.chunks)  # w changes in place: not tagger.emissions (a copy)
            diff = np.flatnonzero(p != g)
            if len(diff):
                rows = f[diff]
                cols_g = np.repeat(g[diff], rows.shape[1])
                cols_p = np.repeat(p[diff], rows.shape[1])
                rows = rows.ravel()
                np.add.at(w, (rows, cols_g), 1.0)
                np.add.at(w, (rows, cols_p), -1.0)
                np.add.at(u_w, (rows, cols_g), c)
                np.add.at(u_w, (rows, cols_p), -c)
                dt = _transition_counts(g, x.chunks) - _transition_counts(p, x.chunks)
                trans += dt
                u_t += c * dt
            c += 1
        if on_epoch is not None:
            on_epoch(epoch, _averaged(tagger, w, trans, u_w, u_t, c))
    return _averaged(tagger, w, trans, u_w, u_t, c)


def _gold_tags(x: Example) -> np.ndarray:
    return spans_to_tags(len(x.text), [g for g in x.gold if _inside_chunk(g, x.chunks)])


def fit_state_layer(examples: list[Example], c: float = STATE_C) -> StateLayer:
    """Logistic regression from LAC's encoder state of each character (inside a chunk) to its gold BIOES tag;
    the layer's CRF weights are left at zero (train_crf learns them)."""
    from sklearn.linear_model import LogisticRegression

    xs, ys = [], []
    for x in examples:
        if x.states is None:
            raise ValueError(f"record {x.id} has no encoder states: load the examples with states=True")
        tags = _gold_tags(x)
        for s, e in x.chunks:
            xs.append(x.states[s:e])
            ys.append(tags[s:e])
    y = np.concatenate(ys)
    if len(np.unique(y)) < 3:
        raise ValueError("the state layer needs gold organisation spans of at least two characters (B, E and O tags)")
    lr = LogisticRegression(C=c, max_iter=300)
    lr.fit(np.concatenate(xs), y)
    coef = np.zeros((xs[0].shape[1], len(TAGS)), dtype=np.float32)
    bias = np.full(len(TAGS), -30.0, dtype=np.float32)  # a tag no training character has: probability ~0
    coef[:, lr.classes_] = lr.coef_.T
    bias[lr.classes_] = lr.intercept_
    return StateLayer(coef, bias, np.zeros((len(TAGS), len(TAGS)), dtype=np.float32))


def train_crf(examples: list[Example], bits: int, c1: float, c2: float, max_iter: int, folds: int = 5,
              states: bool = False, state_c: float = STATE_C, augment: bool = False) -> OrgTagger:
    """Linear-chain CRF (python-crfsuite, L-BFGS with elastic net) on the same hashed features, per chunk.

    CRFsuite's state and transition weights are copied into the numpy tagger, whose Viterbi gives the same
    argmax (a linear-chain CRF decodes by its summed weights). `states`: five more real-valued features per
    character, the BIOES probabilities of a state layer (fit_state_layer, penalty `state_c`) over LAC's encoder
    states; a training record sees the layer fitted on the other folds, as it sees their lexicon.
    `augment`: feature augmentation by domain (Daumé III, "Frustratingly easy domain adaptation", 2007): every
    feature is given twice, once shared and once as a copy of its record's domain (DOMAIN_PREFIX), so the penalty
    lets the shared weights carry what the domains agree on and the copies what differs; the served weight of a
    feature is its shared weight plus its written copy (other domains' copies are dropped), so serving is unchanged.
    """
    import pycrfsuite

    tagger = _empty(bits, build_lexicon(examples))
    fold_of = [_fold(x.group, folds) for x in examples]
    lexicons = [build_lexicon([x for x, f in zip(examples, fold_of, strict=True) if f != k]) for k in range(folds)]
    layers = [fit_state_layer([x for x, f in zip(examples, fold_of, strict=True) if f != k], state_c)
              for k in range(folds)] if states else []
    trainer = pycrfsuite.Trainer(verbose=False)
    for x, f in zip(examples, fold_of, strict=True):
        feats = tagger.features(x.text, x.words, x.marks, lexicons[f])
        tags = _gold_tags(x)
        probs = layers[f].probs(x.states) if states else None  # type: ignore[arg-type]  # checked by fit_state_layer
        copy = DOMAIN_PREFIX[x.domain] if augment else ""  # the domain copy's prefix
        for s, e in x.chunks:
            rows = [[str(v) for v in row] for row in feats[s:e].tolist()]
            if probs is None and not augment:
                trainer.append(rows, [TAGS[t] for t in tags[s:e]])
                continue
            items = []
            for k, row in enumerate(rows):
                item: dict[str, float] = {}
                for a in row:  # a hashed row can repeat within a character: the string form counts it twice too
                    item[a] = item.get(a, 0.0) + 1.0
                if probs is not None:
                    item.update({f"s{t}": v for t, v in enumerate(probs[s + k].tolist())})
                if copy:
                    item.update({copy + a: v for a, v in list(item.items())})
                items.append(item)
            trainer.append(pycrfsuite.ItemSequence(items), [TAGS[t] for t in tags[s:e]])
    trainer.set_params({"c1": c1, "c2": c2, "max_iterations": max_iter, "feature.possible_transitions": True})
    CACHE.mkdir(parents=True, exist_ok=True)
    model_path = CACHE / f"crf-{os.getpid()}.crfsuite"
    trainer.train(str(model_path))
    crf = pycrfsuite.Tagger()
    crf.open(str(model_path))
    info = crf.info()
    layer = fit_state_layer(examples, state_c) if states else None
    for (attr, label), weight in info.state_features.items():
        if attr[0] in DOMAIN_PREFIX.values() and attr[0] != DOMAIN_PREFIX["written"]:  # other domains' copies
            continue
        attr = attr.removeprefix("w")  # the written domain's copy adds to the shared weight
        if attr.startswith("s"):
            layer.weights[int(attr[1:]), TAGS.index(label)] += weight  # type: ignore[union-attr]
        else:
            tagger.weights_[int(attr), TAGS.index(label)] += weight
    for (a, b), weight in info.transitions.items():
        tagger.transitions_[TAGS.index(a), TAGS.index(b)] = weight
    crf.close()
    model_path.unlink()
    return OrgTagger(tagger.weights_, tagger.transitions_, bits, VERSION if states else WORDS_VERSION, tagger.lexicon, layer)


def _averaged(tagger: OrgTagger, w: np.ndarray, trans: np.ndarray, u_w: np.ndarray, u_t: np.ndarray, c: float) -> OrgTagger:
    return OrgTagger((w - u_w / c).astype(np.float32), (trans - u_t / c).astype(np.float32), tagger.bits, tagger.version,
                     tagger.lexicon)


def _inside_chunk(span: tuple[int, int], chunks: list[tuple[int, int]]) -> bool:
    return any(s <= span[0] and span[1] <= e for s, e in chunks)


def tagger_f1(tagger: OrgTagger, examples: list[Example]) -> dict[str, float]:
    """Exact-span precision/recall/F1 of the tagger alone (no overlap resolution with other types)."""
    tp = fp = fn = 0
    for x in examples:
        pred = set(tagger.spans(x.text, x.words, x.marks, x.states))
        gold = set(x.gold)
        tp += len(pred & gold)
        fp += len(pred - gold)
        fn += len(gold - pred)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4)}


def carry_over(previous: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """The new card, keeping the previous card's `out_of_fold` figures when they describe this artifact: same version,
    command and training data (they come from training.experiments.org_oof and take ~10 minutes to recompute)."""
    same = all(previous.get(k) == card.get(k) for k in ("version", "command", "train", "real", "supplement", "lac",
                                                    "extractor"))
    same = same and previous.get("dev", {}).get("sha256") == card["dev"]["sha256"]
    if same and "out_of_fold" in previous and "out_of_fold" not in card:
        return {**card, "out_of_fold": previous["out_of_fold"]}
    return card


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=("crf", "perceptron"), default="crf")
    ap.add_argument("--c1", type=float, default=0.0, help="crf: L1 penalty")
    ap.add_argument("--c2", type=float, default=0.01, help="crf: L2 penalty (chosen on dev: 0.3, 0.1, 0.03, 0.01, 0.003)")
    ap.add_argument("--max-iter", type=int, default=200, help="crf: L-BFGS iterations")
    ap.add_argument("--epochs", type=int, default=12, help="perceptron: maximum epochs; the best on dev is kept")
    ap.add_argument("--bits", type=int, default=18, help="hashed feature rows = 2**bits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5, help="lexicon folds over the training records")
    ap.add_argument("--words", choices=("lac", "fast"), default="lac",
                    help="word source: LAC (serving/ner.py; the shipped tagger) or the fast tagger (triage/words.py; "
                         "dev org F1 0.806 vs 0.810 with the LAC-trained tagger, so not shipped: give --out)")
    ap.add_argument("--fit", choices=("train", "train+dev"), default="train+dev",
                    help="records the tagger (and its lexicon) is fitted on; with train+dev the dev figures are in-sample "
                         "(the choice was made out-of-fold over train+dev, see the module docstring)")
    ap.add_argument("--states", action=argparse.BooleanOptionalAction, default=True,
                    help="crf: also read LAC's encoder states through a state layer (orgs-4 and -5; orgs-5 is shipped); "
                         "--no-states: words only (orgs-3, models/entities/org_tagger_words.npz, used with the fast engine)")
    ap.add_argument("--state-c", type=float, default=STATE_C, help="the state layer's inverse L2 penalty")
    ap.add_argument("--real", action=argparse.BooleanOptionalAction, default=False,
                    help="also fit on the real public messages read for organisations (data/corpus/real/orgs_*.jsonl, "
                         "real train split only; needs ../shared/data/public)")
    ap.add_argument("--supplement", action=argparse.BooleanOptionalAction, default=False,
                    help="also fit on the organisation supplement (data/corpus/supplement/orgs_W*.jsonl)")
    ap.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False,
                    help="with --real: feature augmentation by domain (shared + per-domain copies; see train_crf)")
    ap.add_argument("--sequence-weight", type=float, default=SEQUENCE_WEIGHT,
                    help="with --states: add a neural sequence layer (training/orgs_neural.py, needs torch) at this "
                         "weight (orgs-6; chosen out-of-fold by training.experiments.org_neural); 0: none (orgs-5)")
    ap.add_argument("--sequence-arch", choices=("lstm", "cnn"), default=SEQUENCE["arch"])
    ap.add_argument("--sequence-hidden", type=int, default=SEQUENCE["hidden"])
    ap.add_argument("--sequence-proj", type=int, default=SEQUENCE["proj"])
    ap.add_argument("--sequence-epochs", type=int, default=SEQUENCE["epochs"])
    ap.add_argument("--sequence-dropout", type=float, default=0.4)
    ap.add_argument("--sequence-data", choices=("written", "written+supplement", "written+supplement+real"),
                    default=SEQUENCE["data"],
                    help="the sequence layer's training records: the CRF's (written) plus the organisation supplement "
                         "and/or the real messages read for organisations (the CRF itself follows --supplement/--real)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if not args.states:
        args.sequence_weight = 0.0  # the sequence layer reads encoder states
    if args.states and (args.words != "lac" or args.method != "crf"):
        ap.error("--states needs --words lac and --method crf (only LAC has encoder states); give --no-states")
    if args.out is None and (args.real or args.supplement):
        ap.error("--real/--supplement need --out: the shipped tagger's version names its recipe (written train+dev), and "
                 "neither was chosen out-of-fold (README.md, 'Organisations, session 14')")
    if args.out is None and args.words != "lac":
        ap.error("--words fast needs --out (models/entities/org_tagger_words.npz is the LAC-trained words-only tagger, "
                 "used with both)")
    args.out = args.out or (ORG_TAGGER_PATH if args.states else ORG_TAGGER_WORDS_PATH)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from serving.ner import LacTagger
    from training.entity_eval import entity_report

    taxonomy = load_taxonomy()
    lac = LacTagger() if args.words == "lac" else WordTagger.load()
    rules = EntityExtractor(taxonomy.gazetteer, lac, departments=taxonomy.responsibilities.values(), org_tagger=None)
    train_x = load_examples("train", rules, lac, args.states)
    dev_x = load_examples("dev", rules, lac, args.states)
    dev_records = [json.loads(line) for line in (CORPUS / "dev.jsonl").open(encoding="utf-8") if line.strip()]
    history: list[dict[str, Any]] = []
    sequence_card: dict[str, Any] | None = None
    best: dict[str, Any] = {}

    def on_epoch(epoch: int, tagger: OrgTagger) -> None:
        served = EntityExtractor(taxonomy.gazetteer, lac, departments=taxonomy.responsibilities.values(), org_tagger=tagger)
        report = entity_report(dev_records, served)[0]
        org = report["entities"]["org"]
        row = {"epoch": epoch, "tagger_exact": tagger_f1(tagger, dev_x), "org_exact_f1": org["exact"]["f1"],
               "org_overlap_f1": org["overlap"]["f1"]}
        history.append(row)
        logger.info("%s", json.dumps(row))
        if not best or org["exact"]["f1"] > best["org_exact_f1"]:
            best.update(row, tagger=tagger, report=report)

    fit_x = train_x + dev_x if args.fit == "train+dev" else train_x
    real_x = load_real_examples(rules, lac, args.states) if args.real else []
    sup_x = load_supplement_examples(rules, lac, args.states) if args.supplement else []
    fit_x = fit_x + sup_x + real_x
    if args.method == "crf":
        on_epoch(0, train_crf(fit_x, args.bits, args.c1, args.c2, args.max_iter, args.folds, args.states, args.state_c,
                              args.augment))
        command = f"--words {args.words} --method crf --c1 {args.c1} --c2 {args.c2} --max-iter {args.max_iter}"
        command += f" --states --state-c {args.state_c}" if args.states else " --no-states"
        if args.sequence_weight:
            from training.orgs_neural import train_sequence_layer

            crf = best["tagger"]
            seq_x = [*fit_x]
            seq_x += (sup_x or load_supplement_examples(rules, lac, True)) if "supplement" in args.sequence_data else []
            seq_x += (real_x or load_real_examples(rules, lac, True)) if "real" in args.sequence_data else []
            seq_x = list({id(x): x for x in seq_x}.values())  # records the CRF took too (--supplement) count once
            t0 = time.perf_counter()
            layer = train_sequence_layer(seq_x, args.sequence_weight, args.sequence_epochs, args.seed, args.sequence_dropout,
                                         args.sequence_hidden, "sequence layer", args.sequence_proj, args.sequence_arch)
            sequence_card = {"arch": args.sequence_arch, "hidden": args.sequence_hidden, "proj": args.sequence_proj,
                             "epochs": args.sequence_epochs, "dropout": args.sequence_dropout, "seed": args.seed,
                             "weight": args.sequence_weight, "data": args.sequence_data, "records": len(seq_x),
                             "org_spans": sum(len(x.gold) for x in seq_x), "seconds": round(time.perf_counter() - t0),
                             "supplement_sha256": _files_sha256(supplement_files())
                             if "supplement" in args.sequence_data else None,
                             "real_sha256": _files_sha256(real_files())
                             if "real" in args.sequence_data else None}
            history.clear()
            best.clear()
            on_epoch(0, OrgTagger(crf.weights_, crf.transitions_, crf.bits, SEQUENCE_VERSION, crf.lexicon, crf.state_layer,
                                  layer))
            command += (f" --sequence-weight {args.sequence_weight} --sequence-arch {args.sequence_arch}"
                        f" --sequence-hidden {args.sequence_hidden} --sequence-proj {args.sequence_proj}"
                        f" --sequence-epochs {args.sequence_epochs} --sequence-dropout {args.sequence_dropout}"
                        f" --sequence-data {args.sequence_data} --seed {args.seed}")
        elif args.states:
            command += " --sequence-weight 0"
        command += " --supplement" if args.supplement else ""
        command += (" --real" + (" --augment" if args.augment else "")) if args.real else ""
    else:
        train(fit_x, args.epochs, args.bits, args.seed, args.folds, on_epoch)
        command = f"--words {args.words} --method perceptron --epochs {args.epochs} --seed {args.seed}"
    tagger: OrgTagger = best.pop("tagger")
    report = best.pop("report")
    card = {
        "version": tagger.version,
        "command": f"python -m training.orgs {command} --bits {args.bits} --folds {args.folds} --fit {args.fit}",
        "epochs": best["epoch"],
        "fit": {"splits": args.fit + ("+supplement" if args.supplement else "") + ("+real" if args.real else ""),
                "records": len(fit_x),
                "org_spans": sum(len(x.gold) for x in fit_x)},
        "real": {"records": len(real_x), "org_spans": sum(len(x.gold) for x in real_x),
                 "sha256": _files_sha256(real_files())} if args.real else None,
        "supplement": {"records": len(sup_x), "org_spans": sum(len(x.gold) for x in sup_x),
                       "sha256": _files_sha256(supplement_files())} if args.supplement else None,
        "train": {"records": len(train_x), "org_spans": sum(len(x.gold) for x in train_x),
                  "sha256": hashlib.sha256((CORPUS / "train.jsonl").read_bytes()).hexdigest()},
        "dev": {"records": len(dev_x), "sha256": hashlib.sha256((CORPUS / "dev.jsonl").read_bytes()).hexdigest(),
                "in_fit": args.fit == "train+dev",  # then these figures are in-sample: not a measure of quality
                "entities": report["entities"], "district": report.get("district"), "history": history},
        "lac": lac.version,
        # dev figures are the served extractor's: tagger spans + convention_orgs where the tagger found nothing
        "extractor": EXTRACTOR_VERSION,
        "sequence": sequence_card,
    }
    tagger.save(args.out, {"epochs": best["epoch"]})
    card["sha256"] = hashlib.sha256(args.out.read_bytes()).hexdigest()
    card_path = args.out.with_suffix(".json")
    if card_path.exists():
        card = carry_over(json.loads(card_path.read_text(encoding="utf-8")), card)
    card_path.write_text(json.dumps(card, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    logger.info("best epoch %s: dev org exact F1 %s → %s (%d bytes)", best["epoch"], best["org_exact_f1"], args.out,
                args.out.stat().st_size)


if __name__ == "__main__":
    main()
