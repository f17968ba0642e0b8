"""Topic head (`label`) families beyond topic_cv.py / topic_semi.py: fastText done properly, kNN, a char CNN, ensembles.

    PYTHONPATH=<dir with fasttext> .venv/bin/python -m training.experiments.topic_more [--only NAME ...]
        [--out var/experiments/topic_more.jsonl] [--oof-dir var/experiments/topic_more_oof]

Same protocol as topic_cv.py: 5 stratified folds (seed 20260301) over the 80% training portion of teddy2020
(train + dev); the 20% test split is never read. The unlabelled pool (topic_semi.unlabelled_pool, no labelled text
of any split) is used only to pretrain fastText vectors, together with the fold's training texts.

Members (each a 5-fold out-of-fold score matrix, cached as .npy in --oof-dir so the blends can be rerun):
- `fasttext word (topic_cv setup)` / `fasttext word shuffled`: why topic_cv's fastText scored 0.609. The split
  files are written stratum by stratum, so the training rows are sorted by label; fastText reads its file in order
  and does not shuffle, so each epoch ends on the last classes (single thread). Shuffling the lines fixes it.
- `fasttext word/char pretrained`: skipgram vectors (dim 100, 5 epochs, subwords 1-2 chars) pretrained on the pool
  + the fold's training texts, then train_supervised(pretrainedVectors=..., dim 100, minCount 1).
  Word tokens are the project's segment() tokens (model_input); char tokens are the text's characters.
- `knn ...`: cosine kNN over a TF-IDF (sum of sim^p per class over the top k, normalised), alone and as
  NBSVM + w × kNN.
- `cnn char`: a Kim-style CNN over characters (torch, CPU), embeddings initialised from the fold's char vectors.
Blends (probability averages, per-member temperature as in topic_cv) pick their weight per outer fold on the
other four folds' out-of-fold scores, which is then scored on that fold (mean ± sd over folds, pooled OOF).

fastText is not a project dependency (fasttext-numpy2-wheel is in the `bench` extra); torch is in `transformer`.
The members in EXPENSIVE run only when named with --only; members not run load their cached OOF scores if present.

Results (2026-11-26, 2-core machine shared with other jobs, load 1-11), macro-F1 mean ± sd over folds:
    nbsvm char13 (current) 0.903 ± 0.010 | fasttext word, topic_cv setup 0.620 ± 0.021, same shuffled 0.797 ± 0.017
    fasttext word pretrained unigrams lr 0.2: 0.853 ± 0.020, bigrams lr 0.5: 0.841 ± 0.016; char bigrams 0.858 ± 0.016
    knn char 2-3 k=10: 0.855 ± 0.009, word 1-2: 0.812 ± 0.011; every NBSVM blend above (w on other folds) 0.902-0.905
    cnn char (ft char init, 8 epochs): 0.855 ± 0.007, avg with NBSVM 0.905 ± 0.012. None beats NBSVM by one sd.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedKFold

from training.datasets import model_input
from training.experiments.topic_cv import (
    ROOT,
    SEED,
    char_vec,
    cv_report,
    experiment_args,
    fasttext_log_proba,
    macro,
    nbsvm_scores,
    topic_rows,
)
from training.experiments.topic_semi import unlabelled_pool

EXPENSIVE = ("fasttext char pretrained", "cnn char")  # about 5 and 12 minutes a fold on a loaded 2-core machine: --only
BLEND_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
KNN_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5)


@dataclass
class Fold:
    """One outer fold: index, training/held-out texts (model_input), labels, class count, unlabelled pool."""

    i: int
    tr: list[str]
    y: np.ndarray
    te: list[str]
    n: int
    unlab: list[str]
    scratch: Path


Member = Callable[[Fold], np.ndarray]


def chars(text: str) -> str:
    """Char tokens: the characters of a model_input string (its word separators dropped), space-joined."""
    return " ".join(text.replace(" ", ""))


def _write_lines(lines: list[str], scratch: Path) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False, dir=scratch) as fh:
        fh.write("\n".join(lines) + "\n")
    return fh.name


def pretrain_vectors(lines: list[str], path: Path, scratch: Path) -> Path:
    """Skipgram vectors (dim 100) in .vec format; cached by path (one per fold and token kind).

    Subwords of 1-2 characters: minn = maxn = 0 raised fastText's "Encountered NaN" here (0.9.2, numpy2 wheel).
    """
    import fasttext  # type: ignore[import-not-found]

    if path.exists():
        return path
    corpus = _write_lines(lines, scratch)
    model = fasttext.train_unsupervised(corpus, model="skipgram", dim=100, epoch=5, minCount=2, minn=1, maxn=2, thread=2,
                                        verbose=0)
    Path(corpus).unlink()
    words = model.get_words()
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(f"{len(words)} {model.get_dimension()}\n")
        for w in words:
            fh.write(w + " " + " ".join(f"{x:.5f}" for x in model.get_word_vector(w)) + "\n")
    tmp.rename(path)
    return path


def fasttext_supervised(tr: list[str], y: np.ndarray, te: list[str], n: int, scratch: Path, shuffle: bool = True,
                        **kwargs: Any) -> np.ndarray:
    """train_supervised over `tr` (lines shuffled with a fixed seed unless `shuffle` is False); log-probabilities of `te`."""
    import fasttext  # type: ignore[import-not-found]

    lines = [f"__label__{k} {t}" for t, k in zip(tr, y, strict=True)]
    if shuffle:
        random.Random(SEED).shuffle(lines)
    args = {"wordNgrams": 2, "epoch": 25, "lr": 0.5, "dim": 100, "minCount": 1, "thread": 2, "seed": 1, "verbose": 0, **kwargs}
    path = _write_lines(lines, scratch)
    try:
        model = fasttext.train_supervised(path, **args)
    except RuntimeError:  # "Encountered NaN": seen for some settings (e.g. unigrams lr 0.2 without pretrained vectors)
        model = fasttext.train_supervised(path, **{**args, "thread": 1, "seed": 2})
    finally:
        Path(path).unlink()
    return fasttext_log_proba(model, te, n)


def ft_plain(shuffle: bool, **kwargs: Any) -> Member:
    def run(f: Fold) -> np.ndarray:
        return fasttext_supervised(f.tr, f.y, f.te, f.n, f.scratch, shuffle=shuffle, thread=1, **kwargs)
    return run


def ft_pretrained(tokens: str, **kwargs: Any) -> Member:
    """fastText supervised with the fold's pretrained skipgram vectors; `tokens`: word (segment()) or char."""
    def run(f: Fold) -> np.ndarray:
        tok = (lambda t: t) if tokens == "word" else chars
        tr, te = [tok(t) for t in f.tr], [tok(t) for t in f.te]
        vec = pretrain_vectors(tr + [tok(t) for t in f.unlab], f.scratch / f"fold{f.i}_{tokens}_sg100.vec", f.scratch)
        return fasttext_supervised(tr, f.y, te, f.n, f.scratch, pretrainedVectors=str(vec), **kwargs)
    return run


def nbsvm_member(f: Fold) -> np.ndarray:
    v = char_vec(1, 3)
    return nbsvm_scores(v.fit_transform(f.tr), f.y, v.transform(f.te), 1.0, f.n)


def knn(analyzer: str, lo: int, hi: int, k: int, p: float) -> Member:
    """Class scores from the k most cosine-similar training texts (TF-IDF, sublinear, max_df 0.5): Σ sim^p, normalised."""
    def run(f: Fold) -> np.ndarray:
        word = analyzer == "word"
        v = TfidfVectorizer(analyzer=analyzer, token_pattern=r"[^ ]+" if word else None, ngram_range=(lo, hi), sublinear_tf=True,
                            max_df=0.5, min_df=1 if word else 2, lowercase=False, dtype=np.float32)
        Xtr = v.fit_transform(f.tr)
        S = (v.transform(f.te) @ Xtr.T).toarray()
        idx = np.argsort(-S, axis=1)[:, :k]
        sim, lab = np.take_along_axis(S, idx, 1) ** p, f.y[idx]
        out = np.column_stack([((lab == c) * sim).sum(1) for c in range(f.n)])
        return out / np.maximum(out.sum(1, keepdims=True), 1e-9)
    return run


def cnn_char(epochs: int = 8, maxlen: int = 400, filters: int = 64, init: bool = True) -> Member:
    """Kim-style CNN over characters (kernels 2-5, max-over-time, dropout 0.5), Adam 1e-3, batch 32, fixed epochs."""
    def run(f: Fold) -> np.ndarray:
        import torch
        import torch.nn.functional as F
        from torch import nn

        torch.manual_seed(SEED + f.i)
        rng = np.random.RandomState(SEED + f.i)
        tr, te = [t.replace(" ", "") for t in f.tr], [t.replace(" ", "") for t in f.te]
        counts = Counter(c for t in tr for c in t)
        index = {c: i + 2 for i, c in enumerate(sorted(c for c, m in counts.items() if m >= 2))}  # 0 pad, 1 unknown
        dim = 100
        emb = rng.normal(0, 0.1, (len(index) + 2, dim)).astype(np.float32)
        emb[0] = 0
        if init:
            vec = pretrain_vectors([chars(t) for t in f.tr + f.unlab], f.scratch / f"fold{f.i}_char_sg100.vec", f.scratch)
            with vec.open(encoding="utf-8") as fh:
                next(fh)
                for line in fh:
                    parts = line.rstrip("\n").split(" ")
                    if parts[0] in index:
                        emb[index[parts[0]]] = np.asarray(parts[1:], np.float32)
            emb[2:] *= 0.1 / max(float(emb[2:].std()), 1e-6)

        def encode(ts: list[str]) -> torch.Tensor:
            a = np.zeros((len(ts), maxlen), np.int64)
            for i, t in enumerate(ts):
                ids = [index.get(c, 1) for c in t[:maxlen]]
                a[i, : len(ids)] = ids
            return torch.from_numpy(a)

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.emb = nn.Embedding.from_pretrained(torch.from_numpy(emb), freeze=False, padding_idx=0)
                self.convs = nn.ModuleList([nn.Conv1d(dim, filters, k) for k in (2, 3, 4, 5)])
                self.drop = nn.Dropout(0.5)
                self.out = nn.Linear(4 * filters, f.n)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                e = self.emb(x).transpose(1, 2)
                pad = (x == 0).unsqueeze(1)
                h = [F.relu(c(e)).masked_fill(pad[:, :, c.kernel_size[0] - 1:], 0).amax(2) for c in self.convs]
                return self.out(self.drop(torch.cat(h, 1)))

        net = Net()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        Xtr, Xte, ytr = encode(tr), encode(te), torch.from_numpy(f.y)
        for _ in range(epochs):
            net.train()
            perm = rng.permutation(len(tr))
            for b in range(0, len(perm), 32):
                batch = perm[b:b + 32]
                opt.zero_grad()
                F.cross_entropy(net(Xtr[batch]), ytr[batch]).backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            logits = torch.cat([net(Xte[b:b + 256]) for b in range(0, len(te), 256)])
        return torch.log_softmax(logits, 1).numpy().astype(np.float64)
    return run


def members() -> dict[str, Member]:
    return {
        "nbsvm char13 (current)": nbsvm_member,
        "fasttext word (topic_cv setup, unshuffled)": ft_plain(False),
        "fasttext word shuffled": ft_plain(True),
        "fasttext word pretrained unigrams lr=0.2": ft_pretrained("word", wordNgrams=1, lr=0.2),
        "fasttext word pretrained bigrams lr=0.5": ft_pretrained("word", wordNgrams=2, lr=0.5),
        "fasttext char pretrained bigrams lr=0.2": ft_pretrained("char", wordNgrams=2, lr=0.2),
        "knn char23 k=10 p=4": knn("char", 2, 3, 10, 4),
        "knn word12 k=10 p=1": knn("word", 1, 2, 10, 1),
        "cnn char (ft char init)": cnn_char(),
    }


def fold_weight(y: np.ndarray, folds: list[Any], mix: Callable[[float], np.ndarray], grid: tuple[float, ...]) -> np.ndarray:
    """Per outer fold, the grid weight best on the other folds' OOF rows; that fold's scores mixed with it."""
    out = np.zeros_like(mix(grid[0]))
    for i, (_, te) in enumerate(folds):
        other = np.concatenate([t for j, (_, t) in enumerate(folds) if j != i])
        w = max(grid, key=lambda w: macro(y[other], mix(w)[other]))
        out[te] = mix(w)[te]
    return out


def main() -> None:
    ap_args = experiment_args("topic_more")
    oof_dir = ROOT / "var" / "experiments" / "topic_more_oof"
    oof_dir.mkdir(parents=True, exist_ok=True)
    rows, classes, y = topic_rows()
    texts = [model_input(r["text"]) for r in rows]
    unlab = [model_input(t) for t in unlabelled_pool()]
    folds = list(StratifiedKFold(5, shuffle=True, random_state=SEED).split(texts, y))
    oof: dict[str, np.ndarray] = {}

    def report(name: str, scores: np.ndarray, seconds: float = 0.0) -> dict[str, Any]:
        return cv_report(ap_args.out, name, y, scores, folds, seconds)

    for name, run in members().items():
        cache = oof_dir / (name.replace(" ", "_").replace("/", "_") + ".npy")
        chosen = any(o in name for o in ap_args.only) if ap_args.only else not name.startswith(EXPENSIVE)
        if not chosen:
            if cache.exists():
                oof[name] = np.load(cache)
            continue
        t0 = time.perf_counter()
        scores = np.zeros((len(texts), len(classes)))
        for i, (tr, te) in enumerate(folds):
            f = Fold(i, [texts[j] for j in tr], y[tr], [texts[j] for j in te], len(classes), unlab, oof_dir)
            scores[te] = run(f)
        np.save(cache, scores)
        oof[name] = scores
        report(name, scores, time.perf_counter() - t0)

    base = "nbsvm char13 (current)"
    if base not in oof:
        return
    nb = oof[base]
    probs = {n: softmax(s / max(float(np.std(s)), 1e-9), axis=1) for n, s in oof.items()}
    for name, s in oof.items():
        if name == base:
            continue
        if name.startswith("knn"):  # a linear sum of scores, as a served linear head would add them
            report(f"nbsvm + w × [{name}] (w on other folds)", fold_weight(y, folds, lambda w, s=s: nb + w * s, KNN_GRID))
        report(f"avg[nbsvm, {name}] (w on other folds)",
               fold_weight(y, folds, lambda w, n=name: (1 - w) * probs[base] + w * probs[n], BLEND_GRID))
    print(json.dumps({"members": list(oof)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
