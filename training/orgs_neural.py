"""The organisation tagger's sequence layer, trained with torch (orgs-6): a small neural tagger with its own CRF loss.

The feature CRF (training/orgs.py) decides organisation spans from hashed local features; this layer reads the same
inputs as dense vectors — a character embedding, LAC's word label with the character's position in its word, the
candidate channels and lexicon matches as one-hots, LAC's 256 encoder states — through a ReLU projection and then
either two width-3 convolutions (`arch` "cnn", shipped in orgs-6) or one bidirectional LSTM ("lstm") per clause
chunk, trained with its own CRF loss. Serving adds its scores and transitions, times a weight chosen out-of-fold, to
the CRF's (triage/orgs.SequenceLayer, numpy). A training record sees the lexicon built on the other lexicon folds, as
the CRF's records do. Needs torch (the `transformer` extra); serving does not.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter

import numpy as np
import torch
from torch import nn

from training.orgs import Example, _fold, build_lexicon
from triage.orgs import _ALLOWED, _END_OK, _START_OK, SEQUENCE_HOT, Lexicon, SequenceLayer, sequence_codes, spans_to_tags

NEG = -1e4


class Vocab:
    def __init__(self, texts: list[str], labels: list[str], min_count: int = 2) -> None:
        counts = Counter(ch for t in texts for ch in t)
        self.chars = {ch: i + 2 for i, ch in enumerate(sorted(c for c, n in counts.items() if n >= min_count))}
        self.labels = {lab: i + 1 for i, lab in enumerate(sorted(set(labels)))}


def char_inputs(x: Example, vocab: Vocab, lexicon: Lexicon) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (n,), word label codes (n,), one-hots (n, SEQUENCE_HOT)), laid out by triage.orgs.sequence_codes as served."""
    n = len(x.text)
    ids = np.array([vocab.chars.get(ch, 1) for ch in x.text], dtype=np.int64)
    lab, hot = sequence_codes(n, x.words, x.marks, lexicon.matches(x.text), vocab.labels)
    dense = np.zeros((n, SEQUENCE_HOT), dtype=np.float32)
    dense[np.arange(n)[:, None], hot] = 1.0
    return ids, lab, dense


class SequenceModel(nn.Module):
    """Inputs → ReLU projection → a BiLSTM (`arch` "lstm") or two width-3 convolutions ("cnn") → five scores; CRF loss."""

    def __init__(self, n_chars: int, n_labels: int, dense_dim: int, state_dim: int = 256, hidden: int = 96,
                 dropout: float = 0.2, proj: int = 128, arch: str = "lstm") -> None:
        super().__init__()
        self.arch = arch
        self.char = nn.Embedding(n_chars, 48)
        self.lab = nn.Embedding(n_labels, 16)
        self.proj = nn.Sequential(nn.Linear(48 + 16 + dense_dim + state_dim, proj), nn.ReLU(), nn.Dropout(dropout))
        if arch == "lstm":
            self.lstm = nn.LSTM(proj, hidden, batch_first=True, bidirectional=True)
        else:
            self.conv1 = nn.Conv1d(proj, 2 * hidden, 3, padding=1)
            self.conv2 = nn.Conv1d(2 * hidden, 2 * hidden, 3, padding=1)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, 5))
        self.trans = nn.Parameter(torch.zeros(5, 5))
        self.register_buffer("allowed", torch.tensor(_ALLOWED))
        self.register_buffer("start_ok", torch.tensor(_START_OK))
        self.register_buffer("end_ok", torch.tensor(_END_OK))

    def emissions(self, ids, lab, dense, states, lengths):  # type: ignore[no-untyped-def]
        h = self.proj(torch.cat([self.char(ids), self.lab(lab), dense, states], dim=-1))
        if self.arch == "lstm":
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
            return self.out(out)
        # zero beyond each chunk's end, as serving pads each chunk with zeros
        keep = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).unsqueeze(1).float()
        c = torch.relu(self.conv1(h.transpose(1, 2) * keep)) * keep
        c = torch.relu(self.conv2(c)) * keep
        return self.out(c.transpose(1, 2))

    def masked_trans(self) -> torch.Tensor:
        return torch.where(self.allowed, self.trans, torch.full_like(self.trans, NEG))

    def nll(self, em: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tr = self.masked_trans()
        start = torch.where(self.start_ok, 0.0, NEG)
        end = torch.where(self.end_ok, 0.0, NEG)
        b, t, _ = em.shape
        alpha = em[:, 0] + start
        gold = em[:, 0].gather(1, tags[:, :1]).squeeze(1) + start[tags[:, 0]]
        last = tags[:, 0]
        for i in range(1, t):
            m = mask[:, i]
            nxt = torch.logsumexp(alpha[:, :, None] + tr[None], dim=1) + em[:, i]
            alpha = torch.where(m[:, None], nxt, alpha)
            step = tr[last, tags[:, i]] + em[:, i].gather(1, tags[:, i:i + 1]).squeeze(1)
            gold = gold + torch.where(m, step, torch.zeros_like(step))
            last = torch.where(m, tags[:, i], last)
        log_z = torch.logsumexp(alpha + end, dim=1)
        gold = gold + end[last]
        return (log_z - gold).sum()


def chunk_items(x: Example, vocab: Vocab, lexicon: Lexicon) -> list[tuple[np.ndarray, ...]]:
    """One training item per chunk; a chunk that a gold span crosses into or out of (a real message's answer with a
    comma inside the name) has no valid BIOES path, so it is left out rather than given an impossible target."""
    ids, lab, dense = char_inputs(x, vocab, lexicon)
    tags = spans_to_tags(len(x.text), x.gold)
    return [(ids[a:b], lab[a:b], dense[a:b], x.states[a:b], tags[a:b]) for a, b in x.chunks
            if _START_OK[tags[a]] and _END_OK[tags[b - 1]]]


def batches(items: list[tuple[np.ndarray, ...]], size: int, rng: random.Random) -> list[list[tuple[np.ndarray, ...]]]:
    order = sorted(range(len(items)), key=lambda i: (len(items[i][0]), rng.random()))
    out = [[items[i] for i in order[k:k + size]] for k in range(0, len(order), size)]
    rng.shuffle(out)
    return out


def collate(batch: list[tuple[np.ndarray, ...]]) -> tuple[torch.Tensor, ...]:
    lengths = [len(b[0]) for b in batch]
    t = max(lengths)
    ids = torch.zeros(len(batch), t, dtype=torch.long)
    lab = torch.zeros(len(batch), t, dtype=torch.long)
    dense = torch.zeros(len(batch), t, batch[0][2].shape[1])
    states = torch.zeros(len(batch), t, batch[0][3].shape[1])
    tags = torch.zeros(len(batch), t, dtype=torch.long)
    for i, (a, b_, c, d, e) in enumerate(batch):
        n = len(a)
        ids[i, :n], lab[i, :n], dense[i, :n] = torch.from_numpy(a), torch.from_numpy(b_), torch.from_numpy(c)
        states[i, :n], tags[i, :n] = torch.from_numpy(np.asarray(d, dtype=np.float32)), torch.from_numpy(e)
    mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    return ids, lab, dense, states, tags, mask, torch.tensor(lengths)


def train_sequence_layer(fit: list[Example], weight: float, epochs: int = 6, seed: int = 0, dropout: float = 0.4,
                         hidden: int = 96, log: str = "", proj: int = 128, arch: str = "lstm") -> SequenceLayer:
    """Fit the sequence model on `fit` (records with LAC states) and return it as a serving layer."""
    return to_layer(*fit_model(fit, epochs, seed, dropout, hidden, log, proj, arch), weight)


def fit_model(fit: list[Example], epochs: int = 6, seed: int = 0, dropout: float = 0.4, hidden: int = 96,
              log: str = "", proj: int = 128, arch: str = "lstm") -> tuple[SequenceModel, Vocab]:
    """The torch model and its vocabularies (Adam 2e-3, cosine schedule, batches of 64 chunks of similar length).

    One torch thread: the sums then come out in one order, so a retrain reproduces the artifact on the same kind of
    machine (with two threads the weights differ in the last bits, and a fold's F1 by up to ±0.003)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_model(fit, epochs, seed, dropout, hidden, log, proj, arch)
    finally:
        torch.set_num_threads(threads)


def _fit_model(fit: list[Example], epochs: int, seed: int, dropout: float, hidden: int, log: str, proj: int,
               arch: str) -> tuple[SequenceModel, Vocab]:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    vocab = Vocab([x.text for x in fit], [w for x in fit for _, _, w in x.words])
    fold_of = [_fold(x.group, 5) for x in fit]
    lexicons = [build_lexicon([x for x, f in zip(fit, fold_of, strict=True) if f != k]) for k in range(5)]
    items = [it for x, f in zip(fit, fold_of, strict=True) for it in chunk_items(x, vocab, lexicons[f])]
    dense_dim = items[0][2].shape[1]
    model = SequenceModel(len(vocab.chars) + 2, (len(vocab.labels) + 1) * 5, dense_dim, hidden=hidden, dropout=dropout,
                      proj=proj, arch=arch)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    for ep in range(epochs):
        model.train()
        t0, total = time.perf_counter(), 0.0
        for batch in batches(items, 64, rng):
            ids, lab, dense, states, tags, mask, lengths = collate(batch)
            em = model.emissions(ids, lab, dense, states, lengths)
            loss = model.nll(em, tags, mask) / len(batch)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += float(loss.detach()) * len(batch)
        sched.step()
        if log:
            print(f"{log} epoch {ep}: loss {total / len(items):.4f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                  flush=True)
    return model.eval(), vocab


def to_layer(model: SequenceModel, vocab: Vocab, weight: float) -> SequenceLayer:
    """The trained torch model's weights as triage.orgs.SequenceLayer arrays (torch's gate order kept)."""
    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float32)

    arrays = {
        "char_emb": arr(model.char.weight), "label_emb": arr(model.lab.weight),
        "proj_w": arr(model.proj[0].weight).T, "proj_b": arr(model.proj[0].bias),
        "out_w": arr(model.out[1].weight).T, "out_b": arr(model.out[1].bias), "trans": arr(model.trans),
    }
    if model.arch == "lstm":
        lstm = model.lstm
        arrays.update({
            "lstm_wih_f": arr(lstm.weight_ih_l0), "lstm_whh_f": arr(lstm.weight_hh_l0),
            "lstm_b_f": arr(lstm.bias_ih_l0 + lstm.bias_hh_l0),
            "lstm_wih_b": arr(lstm.weight_ih_l0_reverse), "lstm_whh_b": arr(lstm.weight_hh_l0_reverse),
            "lstm_b_b": arr(lstm.bias_ih_l0_reverse + lstm.bias_hh_l0_reverse),
        })
    else:  # (out, in, width) → (width, in, out): row r of the output sums x[r - 1 + k] @ w[k]
        arrays.update({"conv1_w": arr(model.conv1.weight).transpose(2, 1, 0), "conv1_b": arr(model.conv1.bias),
                       "conv2_w": arr(model.conv2.weight).transpose(2, 1, 0), "conv2_b": arr(model.conv2.bias)})
    chars = "".join(sorted(vocab.chars, key=vocab.chars.__getitem__))
    labels = sorted(vocab.labels, key=vocab.labels.__getitem__)
    return SequenceLayer(arrays, chars, labels, weight)
