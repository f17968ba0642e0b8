"""train → export (parity) → evaluate → promote on a tiny synthetic data set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from tests.model_fixtures import make_rows, tiny_dataset, train_tiny, write_jsonl
from triage.manifest import load_manifest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    files = tiny_dataset(root / "data")
    train_tiny(root / "data", root / "model")
    return {**files, "model": root / "model", "root": root}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "triage_cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_train_writes_manifest_onnx_and_card(tiny: dict[str, Path]) -> None:
    m = load_manifest(tiny["model"])
    assert set(m.heads) == {"track", "department", "request_type"}
    assert m.heads["track"].labels == sorted(["admin_duty", "litigation", "suggestion"])
    assert m.taxonomy_version == "2"
    assert m.segmenter.startswith("rjieba+")
    assert {h.artifact for h in m.heads.values()} == {"model.onnx"}  # one graph, vectorisers shared
    assert {h.output_name for h in m.heads.values()} == {f"probabilities_{f}" for f in m.heads}
    for head in m.heads.values():
        assert (tiny["model"] / head.artifact).exists()
        assert head.parity_max_abs_diff is not None and head.parity_max_abs_diff < 1e-4
    assert "MODEL_CARD.md" in m.artifacts
    m.verify_artifacts(tiny["model"])
    assert m.data_files[0].rows == 60 and len(m.data_files[0].sha256) == 64
    assert m.metrics["track"]["dev"]["macro_f1"] >= 0.9


def test_onnx_parity_with_sklearn_on_new_texts(tiny: dict[str, Path]) -> None:
    """Retrain the same head in Python and compare with the exported graph on unseen texts."""
    from training.baseline import LinearTextHead
    from training.config import load_config
    from training.datasets import labelled, load_jsonl, model_input
    from training.export import check_parity, pipeline_to_onnx

    cfg = load_config(tiny["config"])
    rows, labels = labelled(load_jsonl(tiny["train"]).rows, "track")
    head = LinearTextHead(cfg.members, cfg).fit([model_input(r["text"]) for r in rows], labels)
    texts = [model_input(r["text"]) for r in make_rows(5, 99, "x")] + [model_input("一"), model_input("ABC 公司 😡")]
    pipe = head.to_pipeline()
    assert check_parity(pipe, pipeline_to_onnx(pipe), texts, 1e-4) < 1e-4
    np.testing.assert_allclose(pipe.predict_proba(texts), head.predict_proba(texts), atol=1e-9)


def test_evaluate_json_contract_and_recomputable(tiny: dict[str, Path], tmp_path: Path) -> None:
    preds = tmp_path / "p.jsonl"
    r = run_cli("evaluate", "--data", str(tiny["test"]), "--model", str(tiny["model"]), "--json",
                "--predictions", str(preds))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)  # stdout is exactly one JSON object
    assert report["n"] == 18 and report["model"] == str(tiny["model"])
    assert set(report) >= {"track", "department", "request_type", "latency_ms"}
    assert set(report["latency_ms"]) == {"p50", "p99"}
    assert "top3" in report["department"] and "top3" not in report["track"]
    assert report["track"]["per_class"]["litigation"]["support"] == 6
    lines = [json.loads(x) for x in preds.read_text(encoding="utf-8").splitlines()]
    gold = {row["id"]: row for row in map(json.loads, tiny["test"].read_text(encoding="utf-8").splitlines())}
    assert len(lines) == 18
    for fld in ("track", "department", "request_type"):
        y = [gold[x["id"]][fld] for x in lines]
        p = [x[fld]["label"] for x in lines]
        assert all(x[fld]["label"] == max(x[fld]["scores"], key=x[fld]["scores"].get) for x in lines)
        assert report[fld]["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-4)
        assert report[fld]["macro_f1"] == pytest.approx(
            f1_score(y, p, labels=sorted(set(y) | set(p)), average="macro"), abs=1e-4)


def test_evaluate_ignores_gold_fields_as_inputs(tiny: dict[str, Path], tmp_path: Path) -> None:
    from training.evaluate import evaluate

    rows = [json.loads(x) for x in tiny["test"].read_text(encoding="utf-8").splitlines()]
    wrong = [{**r, "track": "judicial", "department": "tax"} for r in rows]  # misleading gold values
    bare = [{"id": r["id"], "text": r["text"]} for r in rows]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    evaluate(tiny["model"], write_jsonl(tmp_path / "w.jsonl", wrong), predictions=a)
    evaluate(tiny["model"], write_jsonl(tmp_path / "bare.jsonl", bare), predictions=b)
    heads = ("id", "track", "department", "request_type")  # entity/district lines depend on gold keys being present
    strip = [{k: v for k, v in json.loads(x).items() if k in heads} for x in a.read_text().splitlines()]
    strip_b = [{k: v for k, v in json.loads(x).items() if k in heads} for x in b.read_text().splitlines()]
    assert len(strip) == 18 and all(set(x) == set(heads) for x in strip)
    assert strip == strip_b


def test_evaluate_writes_plots(tiny: dict[str, Path], tmp_path: Path) -> None:
    from training.evaluate import evaluate

    report = evaluate(tiny["model"], tiny["test"], plots_dir=tmp_path / "plots")
    for fld in ("track", "department"):
        for path in report[fld]["plots"].values():
            assert Path(path).stat().st_size > 1000


def test_promote_gate(tiny: dict[str, Path], tmp_path: Path) -> None:
    active = tmp_path / "models" / "default"
    r = run_cli("promote", "--candidate", str(tiny["model"]), "--active", str(active), "--data", str(tiny["dev"]))
    assert r.returncode == 0, r.stderr
    assert load_manifest(active).version == load_manifest(tiny["model"]).version
    # A worse candidate: trained on shuffled labels.
    rows = make_rows(20, 1, "tr")
    labels = [r["track"] for r in rows]
    import random

    random.Random(0).shuffle(labels)
    bad_rows = [{**r, "track": t} for r, t in zip(rows, labels, strict=True)]
    bad = tmp_path / "bad"
    train_tiny(tmp_path / "d", bad, fields=("track", "department", "request_type"),
               train_file=write_jsonl(tmp_path / "bad.jsonl", bad_rows))
    r = run_cli("promote", "--candidate", str(bad), "--active", str(active), "--data", str(tiny["dev"]))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "not promoted" in r.stdout and "track.macro_f1" in r.stdout
    assert load_manifest(active).version == load_manifest(tiny["model"]).version  # unchanged
    log = [json.loads(x) for x in (active.parent / "PROMOTIONS.jsonl").read_text().splitlines()]
    assert [x["promoted"] for x in log] == [True, False]


def test_train_cli_rejects_unknown_label(tmp_path: Path) -> None:
    rows = make_rows(3, 1, "u")
    rows[0]["track"] = "no_such_track"
    r = run_cli("train", "--data", str(write_jsonl(tmp_path / "u.jsonl", rows)), "-f", "track",
                "--out", str(tmp_path / "m"))
    assert r.returncode == 1
    assert "no_such_track" in r.stderr
    assert not (tmp_path / "m").exists()


def test_binary_head_and_nbsvm_members_export_exactly(tmp_path: Path) -> None:
    """Two-class heads and NB-scaled members go through the same export path with parity < 1e-4."""
    rows = [r for r in make_rows(15, 5, "b") if r["track"] != "suggestion"]
    files = tiny_dataset(tmp_path / "d")
    m = train_tiny(tmp_path / "d", tmp_path / "m", fields=("track",),
                   train_file=write_jsonl(tmp_path / "b.jsonl", rows),
                   overrides=['members.0.classifier="nbsvm"', 'members.1.classifier="nbsvm"'])
    assert m.heads["track"].labels == ["admin_duty", "litigation"]
    assert m.heads["track"].parity_max_abs_diff < 1e-4
    from serving.sessions import OnnxClassifier
    from triage.taxonomy import load_taxonomy

    clf = OnnxClassifier(tmp_path / "m", load_taxonomy())
    p = clf.predict_proba(["楼下烧烤店油烟扰民，请城管查处。", "朋友借钱不还，想起诉"])["track"]
    assert p.shape == (2, 2)
    assert list(p.argmax(axis=1)) == [0, 1]
    assert files["dev"].exists()


def test_shared_vocabulary_fused_graph_and_data_weights(tmp_path: Path) -> None:
    """Heads with identical member settings share one vectoriser (one TfIdfVectorizer per member kind in the
    graph, one MatMul for all heads); a file's data weight outweighs an equal number of contradicting rows."""
    import onnx

    from training.train import TrainRequest, train

    files = tiny_dataset(tmp_path / "d")
    rows = make_rows(20, 1, "tr")
    flipped = [{**r, "id": r["id"] + "-f", "track": "litigation"} for r in rows if r["track"] == "admin_duty"]
    extra = write_jsonl(tmp_path / "extra.jsonl", flipped)

    def fit(out: str, weights: str):  # type: ignore[no-untyped-def]
        return train(TrainRequest(data=[files["train"], extra], fields=["track", "department", "request_type"],
                                  out_dir=tmp_path / out, dev=[files["dev"]], config_path=files["config"],
                                  overrides=["shared_vocabulary=true", f"data_weights={weights}"]))

    m = fit("heavy", '{"*extra.jsonl" = 4.0}')
    graph = onnx.load(str(tmp_path / "heavy" / "model.onnx")).graph
    assert sum(n.op_type == "TfIdfVectorizer" for n in graph.node) == 2  # char + word, shared by three heads
    assert sum(n.op_type == "MatMul" for n in graph.node) == 2  # one fused MatMul per vectoriser
    assert all(h.parity_max_abs_diff < 1e-4 for h in m.heads.values())
    from serving.sessions import OnnxClassifier
    from triage.taxonomy import load_taxonomy

    texts = [r["text"] for r in flipped[:8]]
    heavy = OnnxClassifier(tmp_path / "heavy", load_taxonomy()).predict_proba(texts)["track"]
    fit("light", '{"*extra.jsonl" = 0.25}')
    light = OnnxClassifier(tmp_path / "light", load_taxonomy()).predict_proba(texts)["track"]
    labels = m.heads["track"].labels
    assert {labels[i] for i in heavy.argmax(axis=1)} == {"litigation"}
    assert {labels[i] for i in light.argmax(axis=1)} == {"admin_duty"}


def test_retraining_keeps_other_components_subdirectories(tmp_path: Path) -> None:
    """models/default/linker/ belongs to the duplicate linker: replacing the classifier must not delete it."""
    from training.train import replace_model_dir

    out = tmp_path / "default"
    (out / "linker").mkdir(parents=True)
    (out / "linker" / "manifest.json").write_text("{}", encoding="utf-8")
    (out / "model.onnx").write_bytes(b"old")
    new = tmp_path / ".default.tmp"
    new.mkdir()
    (new / "model.onnx").write_bytes(b"new")
    replace_model_dir(new, out)
    assert (out / "model.onnx").read_bytes() == b"new"
    assert (out / "linker" / "manifest.json").read_text(encoding="utf-8") == "{}"
    assert not new.exists()


def test_non_binary_tf_member_exports_exactly(tmp_path: Path) -> None:
    """Count TF (binary = false) cannot use the fused 0/1 MatMul: the plain TF-IDF → L2 path keeps parity."""
    import onnx

    m = train_tiny(tmp_path / "d", tmp_path / "m", fields=("track", "department"),
                   overrides=["members.0.binary=false", "shared_vocabulary=true"])
    assert all(h.parity_max_abs_diff < 1e-4 for h in m.heads.values())
    ops = [n.op_type for n in onnx.load(str(tmp_path / "m" / "model.onnx")).graph.node]
    assert ops.count("ReduceL2") == 1 and ops.count("TfIdfVectorizer") == 2


def test_head_leaves_out_excluded_data_files(tmp_path: Path) -> None:
    """`heads.<field>.exclude_data`: that head does not train on the matching file's rows; the other heads do."""
    from serving.sessions import OnnxClassifier
    from training.train import TrainRequest, train
    from triage.taxonomy import load_taxonomy

    files = tiny_dataset(tmp_path / "d")
    flipped = [{**r, "id": r["id"] + "-f", "track": "litigation", "department": "justice"}
               for r in make_rows(20, 1, "tr") if r["track"] == "admin_duty"]
    extra = write_jsonl(tmp_path / "extra.jsonl", flipped)
    m = train(TrainRequest(data=[files["train"], extra], fields=["track", "department"], out_dir=tmp_path / "m",
                           dev=[files["dev"]], config_path=files["config"],
                           overrides=['data_weights={"*extra.jsonl" = 4.0}', 'heads.track.exclude_data=["*extra.jsonl"]']))
    assert m.metrics["track"]["train_rows"] == m.metrics["department"]["train_rows"] - len(flipped)
    proba = OnnxClassifier(tmp_path / "m", load_taxonomy()).predict_proba([r["text"] for r in flipped[:8]])
    assert {m.heads["track"].labels[i] for i in proba["track"].argmax(axis=1)} == {"admin_duty"}
    assert {m.heads["department"].labels[i] for i in proba["department"].argmax(axis=1)} == {"justice"}


def test_head_data_weights_override_the_top_level_ones() -> None:
    """`heads.<field>.data_weights` is looked up before `data_weights`; other heads and unmatched files keep theirs."""
    from training.config import load_config

    config = load_config(overrides=['data_weights={"data/datasets/real/*" = 2.0}',
                                    'heads.track.data_weights={"data/datasets/real/*" = 1.5}'])
    assert config.weight_of("data/datasets/real/train.jsonl", "track") == 1.5
    assert config.weight_of("data/datasets/real/train.jsonl", "department") == 2.0
    assert config.weight_of("data/datasets/real/train.jsonl") == 2.0
    assert config.weight_of("data/corpus/written/train.jsonl", "track") == 1.0


def test_augment_domains_target_view_is_the_target_rows_model() -> None:
    """Feature augmentation: a source row is [x, x, 0], a target row [x, 0, x]; the TargetView of a classifier
    fitted on them scores any x as the classifier scores [x, 0, x] (shared + target weights)."""
    import scipy.sparse as sp
    from sklearn.svm import LinearSVC

    from training.baseline import TargetView, augment_domains

    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.random((40, 6)) * (rng.random((40, 6)) < 0.5))
    target = np.arange(40) % 3 == 0
    y = np.where(X[:, 0].toarray().ravel() > 0.2, "a", np.where(target, "b", "c"))
    aug = augment_domains(X, target)
    assert aug.shape == (40, 18)
    assert np.allclose(aug[:, :6].toarray(), X.toarray())
    assert np.allclose(aug[~target, 6:12].toarray(), X[~target].toarray()) and aug[target, 6:12].nnz == 0
    assert np.allclose(aug[target, 12:].toarray(), X[target].toarray()) and aug[~target, 12:].nnz == 0
    clf = LinearSVC(C=1.0, random_state=0, max_iter=5000).fit(aug, y)
    view = TargetView(clf, 6)
    as_target = augment_domains(X, np.ones(40, dtype=bool))
    assert np.allclose(view.decision_function(X), clf.decision_function(as_target))
    with pytest.raises(ValueError, match="augmented features"):
        TargetView(clf, 5)


def test_target_data_head_follows_the_target_rows_and_exports_exactly(tmp_path: Path) -> None:
    """`heads.<field>.target_data`: where the target file's rows contradict the others (same texts, other label,
    equal numbers, weight 1), the adapted head follows the target rows; the other heads and the graph are plain."""
    from serving.sessions import OnnxClassifier
    from training.train import TrainRequest, train
    from triage.taxonomy import load_taxonomy

    files = tiny_dataset(tmp_path / "d")
    flipped = [{**r, "id": r["id"] + "-f", "track": "litigation"} for r in make_rows(20, 1, "tr") if r["track"] == "admin_duty"]
    extra = write_jsonl(tmp_path / "extra.jsonl", flipped)

    def fit(out: str, overrides: list[str]):  # type: ignore[no-untyped-def]
        return train(TrainRequest(data=[files["train"], extra], fields=["track", "department"], out_dir=tmp_path / out,
                                  dev=[files["dev"]], config_path=files["config"], overrides=overrides))

    m = fit("adapted", ['heads.track.target_data=["*extra.jsonl"]'])
    assert all(h.parity_max_abs_diff < 1e-4 for h in m.heads.values())
    texts = [r["text"] for r in flipped[:8]]
    proba = OnnxClassifier(tmp_path / "adapted", load_taxonomy()).predict_proba(texts)
    assert {m.heads["track"].labels[i] for i in proba["track"].argmax(axis=1)} == {"litigation"}
    plain = fit("plain", [])  # the same data without adaptation: the original rows win the tie
    proba = OnnxClassifier(tmp_path / "plain", load_taxonomy()).predict_proba(texts)
    assert {plain.heads["track"].labels[i] for i in proba["track"].argmax(axis=1)} == {"admin_duty"}
    # a head's target_data must match some --data file (a typo would silently train the plain head otherwise)
    with pytest.raises(ValueError, match="target_data"):
        fit("typo", ['heads.track.target_data=["*no-such-file.jsonl"]'])
