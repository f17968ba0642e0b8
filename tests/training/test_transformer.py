"""`triage train --arch bert`: tiny BERT from scratch and fine-tuned from a local checkpoint, end to end.

Skipped only when torch is not installed (the `transformer` extra; `make test` installs the dev
extra only). Tiny synthetic data and a tiny configuration (training/configs/bert-tiny.toml).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.model_fixtures import tiny_dataset
from triage.errors import ArtifactMismatchError
from triage.manifest import load_manifest
from triage.taxonomy import load_taxonomy

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "training" / "configs" / "bert-tiny.toml"
FIELDS = ("-f", "track", "-f", "department", "-f", "request_type")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "triage_cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_dataset(tmp_path_factory.mktemp("bert") / "data")


@pytest.fixture(scope="module")
def scratch(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bert-model") / "m"
    # float graph here (padding invariance is exact); the fine-tuning test below covers the int8 path
    r = run_cli("train", "--arch", "bert", "--config", str(TINY), "--data", str(data["train"]), "--dev", str(data["dev"]),
                *FIELDS, "--out", str(out), "--set", "quantize=false")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_scratch_model_manifest_and_export(scratch: Path) -> None:
    m = load_manifest(scratch)
    assert m.arch == "bert"
    assert m.input.kind == "token_ids" and m.input.vocab == "vocab.txt" and m.input.max_length == 64
    assert set(m.artifacts) == {"model.onnx", "vocab.txt", "MODEL_CARD.md"}
    m.verify_artifacts(scratch)
    vocab = (scratch / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and "烧" in vocab
    export = m.metrics["export"]
    assert export["quantized"] is False
    assert all(d < 1e-4 for d in export["float_max_abs_diff"].values())  # float graph == torch
    for fld in ("track", "department", "request_type"):
        assert m.heads[fld].output_name == f"probabilities_{fld}"
        assert m.heads[fld].input_name == "input_ids"
        assert m.metrics[fld]["dev"]["macro_f1"] >= 0.9  # 3 separable synthetic classes
    assert m.train_config["base_model"] is None and m.train_config["encoder"]["layers"] == 1
    assert "BERT encoder" in (scratch / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_served_path_and_padding_invariance(scratch: Path) -> None:
    from serving.sessions import OnnxClassifier

    clf = OnnxClassifier(scratch, load_taxonomy(), batch_size=4)
    texts = ["楼下烧烤店油烟扰民，请城管查处。", "朋友借钱不还，想起诉", "建议增设公交站点，方便市民出行。" * 3,
             "一", "ABC 公司 😡", "楼下烧烤店油烟扰民"]
    batched = clf.predict_proba(texts)
    for fld, p in batched.items():
        assert p.shape == (len(texts), len(clf.manifest.heads[fld].labels))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    for i, t in enumerate(texts):  # padding to the chunk's longest text must not change a text's scores
        one = clf.predict_proba([t])
        for fld in batched:
            np.testing.assert_allclose(one[fld][0], batched[fld][i], atol=1e-5)
    top = clf.predict(texts[:2])
    assert top[0]["department"].labels[0].label == "urban"
    assert top[1]["track"].labels[0].label == "litigation"


def test_evaluate_json_on_bert_model(scratch: Path, data: dict[str, Path], tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    r = run_cli("evaluate", "--data", str(data["test"]), "--model", str(scratch), "--json", "--predictions", str(preds))
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["n"] == 18 and report["track"]["macro_f1"] >= 0.9 and "top3" in report["department"]
    lines = [json.loads(x) for x in preds.read_text(encoding="utf-8").splitlines()]
    assert all(x["track"]["label"] == max(x["track"]["scores"], key=x["track"]["scores"].get) for x in lines)


def test_serving_refuses_a_changed_vocabulary(scratch: Path, tmp_path: Path) -> None:
    import shutil

    from serving.sessions import OnnxClassifier

    copy = tmp_path / "m"
    shutil.copytree(scratch, copy)
    with (copy / "vocab.txt").open("a", encoding="utf-8") as fh:
        fh.write("新\n")
    with pytest.raises(ArtifactMismatchError, match="vocab.txt"):
        OnnxClassifier(copy, load_taxonomy())


def test_fine_tune_from_local_checkpoint(data: dict[str, Path], tmp_path: Path) -> None:
    """A checkpoint directory as `save_pretrained` writes it, with its own WordPiece vocabulary."""
    from transformers import BertConfig, BertModel

    from serving.wordpiece import build_char_vocab

    base = tmp_path / "base"
    texts = [json.loads(x)["text"] for x in data["train"].read_text(encoding="utf-8").splitlines()]
    vocab = build_char_vocab(texts, size=500, min_count=1) + ["油烟", "##谢"]
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab) + 3, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=48)).save_pretrained(str(base))
    (base / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (base / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}), encoding="utf-8")
    out = tmp_path / "ft"
    r = run_cli("train", "--arch", "bert", "--base-model", str(base), "--config", str(TINY), "--data", str(data["train"]),
                "--dev", str(data["dev"]), *FIELDS, "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    m = load_manifest(out)
    export = m.metrics["export"]
    assert export["quantized"] is True and export["weight_type"] == "QInt8"
    assert all(d < 1e-4 for d in export["float_max_abs_diff"].values())  # float graph == torch before int8
    assert all(a >= 0.9 for a in export["argmax_agreement_vs_torch"].values())
    assert m.train_config["base_model"] == str(base.resolve())
    assert m.input.max_length == 48  # capped by the checkpoint's position embeddings
    assert m.input.lowercase is False
    assert (out / "vocab.txt").read_text(encoding="utf-8").splitlines() == vocab
    assert m.metrics["track"]["dev"]["macro_f1"] >= 0.9


def test_base_model_without_vocab_fails_clearly(data: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("train", "--arch", "bert", "--base-model", str(empty), "--config", str(TINY), "--data", str(data["train"]),
                *FIELDS, "--out", str(tmp_path / "x"))
    assert r.returncode == 1
    assert "vocab.txt" in r.stderr
    assert not (tmp_path / "x").exists()
