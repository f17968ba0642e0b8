"""`triage train --arch bert`: a BERT encoder with one classification head per label field.

    train_transformer(TrainRequest(...), base_model=DIR or None) -> ModelManifest

- With `--base-model DIR` (a local checkpoint: `config.json`, weights, `vocab.txt`, optionally
  `tokenizer_config.json` with `do_lower_case`) the encoder is fine-tuned from it and its
  WordPiece vocabulary is used. Nothing is downloaded: DIR must be on disk.
- Without it, a small BERT is trained from scratch on a character vocabulary built from the
  training texts (`serving.wordpiece.build_char_vocab`).

Every head reads the [CLS] vector; rows without a head's label do not contribute to its loss
(multi-task over files that label different fields). Class-balanced cross-entropy, AdamW with a
linear warm-up/decay. A seeded `calibration_fraction` of the training rows is held out of the
gradient steps and used only to fit temperature + class biases (as the linear heads do with
out-of-fold scores); --dev files are only reported on. The export is one ONNX graph
(`torch.onnx.export`, TorchScript exporter: the dynamo one needs onnxscript) with inputs
`input_ids`/`attention_mask` and one calibrated `probabilities_<field>` output per head,
checked against torch (< parity_tolerance), then dynamically quantised to int8
(`onnxruntime.quantization.quantize_dynamic`; its difference from torch and arg-max agreement
are recorded, and the agreement must reach `min_quantized_agreement`).
Serving needs onnxruntime and `serving.wordpiece` only (no torch, no transformers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import softmax

from serving.wordpiece import WordPieceTokenizer, build_char_vocab
from training.baseline import expected_calibration_error, fit_calibration
from training.config import CONFIG_DIR, CalibrationConfig, _set_path
from training.datasets import LoadedFile, display_path, load_jsonl
from training.metrics import head_metrics
from training.train import TrainRequest, checked_labels, git_commit, replace_model_dir, write_model_card
from triage.errors import ArtifactMismatchError
from triage.manifest import DataFile, HeadSpec, InputSpec, ModelManifest, sha256_file
from triage.taxonomy import load_taxonomy
from triage.text import normalize, segmenter_id

logger = logging.getLogger(__name__)

BERT_CONFIG = CONFIG_DIR / "bert.toml"
MODEL_FILE = "model.onnx"
VOCAB_FILE = "vocab.txt"
IGNORE = -100


class TransformerConfig(BaseModel):
    """Every hyperparameter of `triage train --arch bert` (training/configs/bert.toml)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(20260301, description="Seed of initialisation, shuffling and the calibration hold-out")
    vocab_size: int = Field(6000, ge=16, description="From scratch: largest character vocabulary")
    vocab_min_count: int = Field(2, ge=1, description="From scratch: characters seen fewer times become [UNK]")
    lowercase: bool = Field(False, description="From scratch: lowercase Latin text (a base model brings its own)")
    hidden_size: int = Field(256, ge=8, description="From scratch: encoder width")
    num_layers: int = Field(4, ge=1, description="From scratch: transformer layers")
    num_heads: int = Field(4, ge=1, description="From scratch: attention heads")
    intermediate_size: int = Field(1024, ge=8, description="From scratch: feed-forward width")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the encoder and before the heads")
    max_length: int = Field(256, ge=8, description="Ids per text incl. [CLS]/[SEP]; longer texts keep their beginning")
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-4, gt=0, description="Peak AdamW learning rate (5e-4 from scratch; ~5e-5 to fine-tune)")
    base_lr: float = Field(5e-5, gt=0, description="Peak learning rate when fine-tuning a --base-model")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    class_weight: str = Field("balanced", pattern="^(balanced|none)$")
    calibration_fraction: float = Field(0.1, ge=0, lt=0.5, description="Training rows held out to fit calibration")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    threads: int = Field(1, ge=1, description="torch intra-op threads while training")
    quantize: bool = Field(True, description="Ship the int8 dynamically quantised graph")
    min_quantized_agreement: float = Field(0.97, ge=0, le=1, description="Arg-max agreement int8 vs torch required")
    parity_tolerance: float = Field(1e-4, gt=0, description="Largest |p_onnx_float - p_torch|")
    parity_rows: int = Field(200, ge=1)
    max_train_rows: int | None = Field(None, ge=10, description="Use only the first N training rows (smoke runs)")


def load_transformer_config(path: Path = BERT_CONFIG, overrides: list[str] | None = None) -> TransformerConfig:
    """Read a TOML config and apply `key=value` overrides (same syntax as the linear config)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        _set_path(data, key.strip(), raw.strip())
    return TransformerConfig.model_validate(data)


# --- the network -------------------------------------------------------------------------------


def _torch():  # type: ignore[no-untyped-def]
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ValueError("--arch bert needs the transformer extra: pip install -e '.[transformer]'") from exc
    return torch


def build_network(fields: list[str], n_labels: dict[str, int], cfg: TransformerConfig, vocab_size: int,
                  base_model: Path | None):  # type: ignore[no-untyped-def]
    """BertModel (from `base_model` or a fresh config) + dropout + one Linear per field on [CLS]."""
    torch = _torch()
    from transformers import BertConfig, BertModel

    class MultiHeadBert(torch.nn.Module):
        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder
            self.dropout = torch.nn.Dropout(cfg.dropout)
            width = encoder.config.hidden_size
            self.heads = torch.nn.ModuleDict({f: torch.nn.Linear(width, n_labels[f]) for f in fields})

        def forward(self, input_ids: Any, attention_mask: Any) -> dict[str, Any]:
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]
            h = self.dropout(h)
            return {f: head(h) for f, head in self.heads.items()}

    if base_model is not None:
        encoder = BertModel.from_pretrained(str(base_model), add_pooling_layer=False)
        if encoder.config.vocab_size < vocab_size:
            raise ValueError(f"{base_model}: vocab.txt has {vocab_size} tokens, the model only {encoder.config.vocab_size}")
    else:
        encoder = BertModel(BertConfig(
            vocab_size=vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
            hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
            max_position_embeddings=cfg.max_length, type_vocab_size=1, pad_token_id=0,
        ), add_pooling_layer=False)
    return MultiHeadBert(encoder)


def calibrated_module(net: Any, fields: list[str], temps: dict[str, float],
                      biases: dict[str, npt.NDArray[Any]]):  # type: ignore[no-untyped-def]
    """The trained network for export: a tuple of softmax(logits / T + b), one per field in order."""
    torch = _torch()

    class Calibrated(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            for f in fields:
                self.register_buffer(f"t_{f}", torch.tensor(float(temps[f])))
                self.register_buffer(f"b_{f}", torch.tensor(np.asarray(biases[f], dtype=np.float32)))

        def forward(self, input_ids: Any, attention_mask: Any) -> tuple[Any, ...]:
            logits = self.net(input_ids, attention_mask)
            return tuple(torch.softmax(logits[f] / getattr(self, f"t_{f}") + getattr(self, f"b_{f}"), dim=-1)
                         for f in fields)

    return Calibrated().eval()


# --- training ------------------------------------------------------------------------------------


def _batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths (less padding): sort within windows of 50 batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def _logits(net: Any, seqs: list[list[int]], pad_id: int, fields: list[str], batch: int = 64) -> dict[str, npt.NDArray[Any]]:
    torch = _torch()
    net.eval()
    out: dict[str, list[npt.NDArray[Any]]] = {f: [] for f in fields}
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    with torch.no_grad():
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            ids, mask = _pad([seqs[i] for i in idx], pad_id)
            res = net(torch.from_numpy(ids), torch.from_numpy(mask))
            for f in fields:
                out[f].append(res[f].float().numpy())
    inverse = np.argsort(np.asarray(order))
    return {f: np.vstack(v)[inverse] if v else np.zeros((0, 0)) for f, v in out.items()}


def _fit(net: Any, seqs: list[list[int]], targets: dict[str, npt.NDArray[np.int64]], weights: dict[str, Any],
         cfg: TransformerConfig, lr: float, pad_id: int) -> list[float]:
    torch = _torch()
    rng = random.Random(cfg.seed)
    lengths = [len(s) for s in seqs]
    steps_per_epoch = math.ceil(len(seqs) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, int(total * cfg.warmup_ratio))
    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    groups = [
        {"params": [p for n, p in net.named_parameters() if not any(k in n for k in no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in net.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    losses = {f: torch.nn.CrossEntropyLoss(weight=weights[f], ignore_index=IGNORE) for f in targets}
    history = []
    step = 0
    for epoch in range(cfg.epochs):
        net.train()
        t0, running, n = time.perf_counter(), 0.0, 0
        for batch in _batches(lengths, cfg.batch_size, rng):
            ids, mask = _pad([seqs[i] for i in batch], pad_id)
            out = net(torch.from_numpy(ids), torch.from_numpy(mask))
            loss = torch.zeros(())
            for f, y in targets.items():
                yb = torch.from_numpy(y[batch])
                if bool((yb != IGNORE).any()):
                    loss = loss + losses[f](out[f], yb)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            running += float(loss)
            n += 1
        history.append(round(running / max(1, n), 4))
        logger.info("epoch %d/%d: mean loss %.4f, %d steps, %.1fs", epoch + 1, cfg.epochs, history[-1], n,
                    time.perf_counter() - t0)
    return history


def _base_tokenizer(base_model: Path, max_length: int) -> tuple[list[str], bool]:
    vocab_path = base_model / VOCAB_FILE
    if not vocab_path.exists():
        raise ValueError(f"{base_model} has no {VOCAB_FILE}: --base-model must be a local BERT checkpoint directory")
    vocab = vocab_path.read_text(encoding="utf-8").split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()
    lowercase = True  # BertTokenizer's default
    tok_cfg = base_model / "tokenizer_config.json"
    if tok_cfg.exists():
        lowercase = bool(json.loads(tok_cfg.read_text(encoding="utf-8")).get("do_lower_case", True))
    return vocab, lowercase


def train_transformer(req: TrainRequest, base_model: Path | None = None,
                      config: TransformerConfig | None = None) -> ModelManifest:
    """Train (or fine-tune) the encoder and heads, export + quantise ONNX, write manifest and card.

    Raises:
        ValueError: a field has no labelled rows / fewer than two classes / unknown labels, a bad
            --base-model directory, or the transformer extra is missing.
        ArtifactMismatchError: the exported graph does not reproduce torch, or int8 disagrees too often.
    """
    torch = _torch()
    t_start = time.perf_counter()
    cfg = config or load_transformer_config(req.config_path, req.overrides)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    taxonomy = load_taxonomy()
    files: list[LoadedFile] = [load_jsonl(p) for p in req.data]
    dev_files: list[LoadedFile] = [load_jsonl(p) for p in req.dev]
    all_rows = [r for f in files for r in f.rows]
    fields = list(req.fields)
    labels: dict[str, list[str]] = {}
    for fld in fields:
        _, ys = checked_labels(all_rows, fld, taxonomy)
        labels[fld] = sorted(set(ys))
        if len(labels[fld]) < 2:
            raise ValueError(f"{fld}: a head needs at least two classes in its training data")
    rows = [r for r in all_rows if any(isinstance(r.get(f), str) and r.get(f) for f in fields)]
    if cfg.max_train_rows:
        rows = rows[: cfg.max_train_rows]
    if base_model is not None:
        vocab, lowercase = _base_tokenizer(base_model, cfg.max_length)
        from transformers import BertConfig

        max_len = min(cfg.max_length, BertConfig.from_pretrained(str(base_model)).max_position_embeddings)
    else:
        vocab = build_char_vocab((normalize(r["text"]) for r in rows), size=cfg.vocab_size, min_count=cfg.vocab_min_count)
        lowercase, max_len = cfg.lowercase, cfg.max_length
    tokenizer = WordPieceTokenizer(vocab, lowercase=lowercase, max_length=max_len)
    seqs = [tokenizer.ids(normalize(r["text"])) for r in rows]
    index = {f: {lab: i for i, lab in enumerate(labels[f])} for f in fields}
    targets = {f: np.array([index[f].get(r.get(f), IGNORE) if isinstance(r.get(f), str) else IGNORE for r in rows],
                           dtype=np.int64) for f in fields}
    # Calibration hold-out: seeded, never used for gradient steps.
    rng = np.random.default_rng(cfg.seed)
    held = rng.random(len(rows)) < cfg.calibration_fraction
    fit_idx, cal_idx = np.flatnonzero(~held), np.flatnonzero(held)
    weights = {}
    for f in fields:
        y = targets[f][fit_idx]
        counts = np.bincount(y[y != IGNORE], minlength=len(labels[f])).astype(np.float64)
        if cfg.class_weight == "balanced":
            w = np.where(counts > 0, counts.sum() / (len(labels[f]) * np.maximum(counts, 1)), 0.0)
        else:
            w = np.ones(len(labels[f]))
        weights[f] = torch.tensor(w, dtype=torch.float32)
    net = build_network(fields, {f: len(labels[f]) for f in fields}, cfg, len(vocab), base_model)
    lr = cfg.base_lr if base_model is not None else cfg.lr
    logger.info("bert %s: %d rows (%d for calibration), vocab %d, max_length %d, %d parameters, lr %g",
                f"fine-tuned from {base_model}" if base_model else "from scratch", len(rows), len(cal_idx), len(vocab),
                max_len, sum(p.numel() for p in net.parameters()), lr)
    history = _fit(net, [seqs[i] for i in fit_idx], {f: t[fit_idx] for f, t in targets.items()}, weights, cfg, lr,
                   tokenizer.pad_id)

    # Calibration on the held-out rows.
    temps: dict[str, float] = {}
    biases: dict[str, npt.NDArray[Any]] = {}
    cal_logits = _logits(net, [seqs[i] for i in cal_idx], tokenizer.pad_id, fields) if len(cal_idx) else {}
    for f in fields:
        y = targets[f][cal_idx] if len(cal_idx) else np.zeros(0, dtype=np.int64)
        known = y != IGNORE
        if cfg.calibration.method != "none" and known.sum() >= 10:
            temps[f], biases[f] = fit_calibration(cal_logits[f][known], y[known], cfg.calibration)  # softmax(z / T + b)
        else:
            temps[f], biases[f] = 1.0, np.zeros(len(labels[f]))

    # Dev report.
    dev_rows = [r for f in dev_files for r in f.rows]
    metrics: dict[str, Any] = {"train_loss": history}
    dev_seqs = [tokenizer.ids(normalize(r["text"])) for r in dev_rows]
    dev_logits = _logits(net, dev_seqs, tokenizer.pad_id, fields) if dev_rows else {}
    for f in fields:
        rep: dict[str, Any] = {"train_rows": int((targets[f][fit_idx] != IGNORE).sum()),
                               "calibration_rows": int((targets[f][cal_idx] != IGNORE).sum())}
        idx = [i for i, r in enumerate(dev_rows) if isinstance(r.get(f), str) and r.get(f)]
        if idx:
            gold = [dev_rows[i][f] for i in idx]
            lg = dev_logits[f][idx]
            proba = softmax(lg / temps[f] + biases[f], axis=1)
            rep["dev"] = head_metrics(f, gold, proba, labels[f], cfg.calibration.ece_bins)
            y_idx = np.array([index[f].get(g, -1) for g in gold])
            known = y_idx >= 0
            rep["dev"]["ece_uncalibrated"] = (round(expected_calibration_error(softmax(lg, axis=1)[known], y_idx[known],
                                                                              cfg.calibration.ece_bins), 4)
                                              if known.any() else None)
            logger.info("head %s dev: macro_f1=%.4f accuracy=%.4f", f, rep["dev"]["macro_f1"], rep["dev"]["accuracy"])
        metrics[f] = rep
    parity_seqs = (dev_seqs or seqs)[: cfg.parity_rows]

    out_dir = req.out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        (tmp / VOCAB_FILE).write_text("\n".join(vocab) + "\n", encoding="utf-8")
        export = calibrated_module(net, fields, temps, biases)
        outputs = {f: f"probabilities_{f}" for f in fields}
        float_path = tmp / "model.float.onnx"
        _export_onnx(export, fields, outputs, float_path, tokenizer.pad_id)
        ref = _torch_proba(export, parity_seqs, tokenizer.pad_id, fields)
        float_diff = _max_diff(float_path, parity_seqs, tokenizer.pad_id, fields, outputs, ref)
        logger.info("ONNX float parity on %d texts: %s", len(parity_seqs), float_diff)
        bad = {f: d for f, d in float_diff.items() if d >= cfg.parity_tolerance}
        if bad:
            raise ArtifactMismatchError(f"ONNX probabilities differ from torch: {bad} (tolerance {cfg.parity_tolerance:.0e})")
        final_diff = float_diff
        quant: dict[str, Any] = {"quantized": False}
        if cfg.quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.WARNING)  # quantize_dynamic logs every tensor on the root logger
            try:
                quantize_dynamic(str(float_path), str(tmp / MODEL_FILE), weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
            final_diff = _max_diff(tmp / MODEL_FILE, parity_seqs, tokenizer.pad_id, fields, outputs, ref)
            agree = _agreement(tmp / MODEL_FILE, parity_seqs, tokenizer.pad_id, fields, outputs, ref)
            quant = {"quantized": True, "weight_type": "QInt8", "max_abs_diff_vs_torch": final_diff,
                     "argmax_agreement_vs_torch": agree, "float_bytes": float_path.stat().st_size}
            logger.info("int8 graph: max |Δp| %s, arg-max agreement %s", final_diff, agree)
            low = {f: a for f, a in agree.items() if a < cfg.min_quantized_agreement}
            if low:
                raise ArtifactMismatchError(f"int8 graph agrees with torch on too few arg-max labels: {low}")
            float_path.unlink()
        else:
            float_path.rename(tmp / MODEL_FILE)
        metrics["export"] = {"parity_rows": len(parity_seqs), "float_max_abs_diff": float_diff, **quant}
        metrics["artifact_bytes"] = (tmp / MODEL_FILE).stat().st_size
        heads = {}
        for f in fields:
            d = metrics[f].get("dev", {})
            heads[f] = HeadSpec(
                field=f, labels=labels[f], artifact=MODEL_FILE, input_name="input_ids", output_name=outputs[f],
                train_rows=metrics[f]["train_rows"],
                calibration={"method": cfg.calibration.method, "temperature": round(float(temps[f]), 6),
                             "bias": [round(float(b), 6) for b in biases[f]],
                             "fitted_on": f"held-out {cfg.calibration_fraction:.0%} of the training rows",
                             "ece_dev_uncalibrated": d.get("ece_uncalibrated"), "ece_dev": d.get("ece")},
                parity_max_abs_diff=final_diff[f],
            )
        created = datetime.now(UTC).replace(microsecond=0)
        hashes = {MODEL_FILE: sha256_file(tmp / MODEL_FILE), VOCAB_FILE: sha256_file(tmp / VOCAB_FILE)}
        version = created.strftime("%Y%m%dT%H%M%SZ") + "-" + hashlib.sha256(
            "".join(sorted(hashes.values())).encode()).hexdigest()[:8]
        enc = net.encoder.config
        common: dict[str, Any] = {
            "name": req.name or out_dir.name, "version": version, "created_at": created.isoformat(),
            "taxonomy_version": taxonomy.version, "segmenter": segmenter_id(),
            "heads": {k: v.model_dump() for k, v in heads.items()},
            "data_files": [DataFile(path=display_path(f.path), sha256=f.sha256, rows=len(f.rows)).model_dump()
                           for f in files],
            "metrics": metrics, "git_commit": git_commit(),
        }
        origin = (f"fine-tuned from `{display_path(base_model)}`" if base_model
                  else "trained from scratch on a character vocabulary")
        model_text = (
            f"**Model.** BERT encoder ({enc.num_hidden_layers} layers, width {enc.hidden_size}, vocabulary "
            f"{len(vocab)}, {origin}) "
            f"with one linear head per field on [CLS]; class-balanced cross-entropy; temperature + class-bias calibration "
            f"fitted on {cfg.calibration_fraction:.0%} of the training rows held out; input: normalised text → "
            f"WordPiece ids (`serving.wordpiece`, max {max_len}); exported with torch.onnx"
            f"{' and quantised to int8' if cfg.quantize else ''} (`model.onnx`)."
        )
        card = write_model_card(tmp, common, model_text)
        hashes[card.name] = sha256_file(card)
        manifest = ModelManifest.model_validate({
            **common, "arch": "bert", "artifacts": hashes,
            "input": InputSpec(kind="token_ids", vocab=VOCAB_FILE, lowercase=lowercase, max_length=max_len),
            "train_config": {
                **cfg.model_dump(mode="json"), "arch": "bert", "fields": fields,
                "base_model": display_path(base_model) if base_model else None,
                "encoder": {"layers": enc.num_hidden_layers, "hidden_size": enc.hidden_size, "heads": enc.num_attention_heads,
                            "intermediate_size": enc.intermediate_size},
                "dev_files": [DataFile(path=display_path(f.path), sha256=f.sha256, rows=len(f.rows)).model_dump()
                              for f in dev_files],
                "config_file": display_path(req.config_path), "overrides": req.overrides,
            },
        })
        manifest.write(tmp)
        replace_model_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("model %s %s written to %s in %.1fs", manifest.name, manifest.version, out_dir, time.perf_counter() - t_start)
    return manifest


# --- export helpers ------------------------------------------------------------------------------


def _export_onnx(module: Any, fields: list[str], outputs: dict[str, str], path: Path, pad_id: int) -> None:
    import warnings

    torch = _torch()
    ids = torch.full((2, 12), 5, dtype=torch.long)
    mask = torch.ones((2, 12), dtype=torch.long)
    mask[1, 8:] = 0
    ids[1, 8:] = pad_id
    names = [outputs[f] for f in fields]
    dyn = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}}
    dyn.update({n: {0: "batch"} for n in names})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=names, dynamic_axes=dyn, opset_version=17, dynamo=False)


def _torch_proba(module: Any, seqs: list[list[int]], pad_id: int, fields: list[str]) -> dict[str, npt.NDArray[Any]]:
    torch = _torch()
    out: dict[str, list[npt.NDArray[Any]]] = {f: [] for f in fields}
    with torch.no_grad():
        for start in range(0, len(seqs), 16):
            ids, mask = _pad(seqs[start:start + 16], pad_id)
            res = module(torch.from_numpy(ids), torch.from_numpy(mask))
            for f, p in zip(fields, res, strict=True):
                out[f].append(p.numpy())
    return {f: np.vstack(v) for f, v in out.items()}


def _onnx_proba(path: Path, seqs: list[list[int]], pad_id: int, fields: list[str],
                outputs: dict[str, str]) -> dict[str, npt.NDArray[Any]]:
    from training.export import onnx_session

    sess = onnx_session(path)
    out: dict[str, list[npt.NDArray[Any]]] = {f: [] for f in fields}
    for start in range(0, len(seqs), 16):
        ids, mask = _pad(seqs[start:start + 16], pad_id)
        res = sess.run([outputs[f] for f in fields], {"input_ids": ids, "attention_mask": mask})
        for f, p in zip(fields, res, strict=True):
            out[f].append(p)
    return {f: np.vstack(v) for f, v in out.items()}


def _max_diff(path: Path, seqs: list[list[int]], pad_id: int, fields: list[str], outputs: dict[str, str],
              ref: dict[str, npt.NDArray[Any]]) -> dict[str, float]:
    got = _onnx_proba(path, seqs, pad_id, fields, outputs)
    return {f: float(np.abs(got[f] - ref[f]).max()) for f in fields}


def _agreement(path: Path, seqs: list[list[int]], pad_id: int, fields: list[str], outputs: dict[str, str],
               ref: dict[str, npt.NDArray[Any]]) -> dict[str, float]:
    got = _onnx_proba(path, seqs, pad_id, fields, outputs)
    return {f: round(float((got[f].argmax(1) == ref[f].argmax(1)).mean()), 4) for f in fields}
