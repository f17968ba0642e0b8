"""`triage evaluate --history` end to end on small files cut from the written test split (real store, real models)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_SPLIT = ROOT / "data" / "corpus" / "written" / "test.jsonl"


def _small_files(tmp_path: Path) -> tuple[Path, Path, dict[str, str | None]]:
    from training.linking import history_split, read_jsonl

    history, evaluated = history_split(read_jsonl(TEST_SPLIT))
    resub = [r for r in evaluated if r.get("duplicate_of")][:15]
    others = [r for r in evaluated if not r.get("duplicate_of")][:10]
    wanted = {r["duplicate_of"] for r in resub}
    hist = [r for r in history if r["id"] in wanted] + [r for r in history if r["id"] not in wanted][:15]
    h, d = tmp_path / "history.jsonl", tmp_path / "eval.jsonl"
    h.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in hist), encoding="utf-8")
    d.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in resub + others), encoding="utf-8")
    return h, d, {r["id"]: r["duplicate_of"] for r in resub + others}


@pytest.mark.slow
@pytest.mark.e2e
def test_evaluate_history_reports_duplicates_and_links(tmp_path: Path) -> None:
    history, data, gold = _small_files(tmp_path)
    pred = tmp_path / "pred.jsonl"
    out = subprocess.run(
        [sys.executable, "-m", "triage_cli.main", "evaluate", "--data", str(data), "--history", str(history), "--json",
         "--predictions", str(pred)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)  # stdout carries only the JSON object
    dup = report["duplicates"]
    assert dup["n"] == len(gold) and dup["with_gold_id"] == 15 and dup["history_cases"] == 30
    lines = [json.loads(x) for x in pred.read_text(encoding="utf-8").splitlines()]
    assert {ln["id"] for ln in lines} == set(gold)
    # recompute the DESIGN.md metric from the prediction lines
    tp = fp = fn = 0
    for ln in lines:
        top = ln["links"][0]["case_id"] if ln["links"] else None
        g = gold[ln["id"]]
        tp += top is not None and top == g
        fp += top is not None and top != g
        fn += g is not None and top != g
        for lk in ln["links"]:
            assert set(lk) >= {"case_id", "probability", "reasons"} and lk["probability"] >= dup["threshold"]
    assert (dup["tp"], dup["fp"], dup["fn"]) == (tp, fp, fn)
    assert dup["precision"] == pytest.approx(tp / (tp + fp), abs=1e-4)
    assert dup["recall"] >= 0.8  # re-submissions of the held-out split: the linker finds most of them


@pytest.mark.slow
def test_verifier_is_calibrated_on_held_out_test_pairs() -> None:
    """Calibration sanity on the test split (never used in training, calibration or thresholds)."""
    import numpy as np

    from training.linking import CACHE, make_extractor, prepare, read_jsonl, split_pairs
    from triage.linking.features import load_encoder
    from triage.linking.verifier import LinkVerifier

    linker_dir = ROOT / "models" / "default" / "linker"
    verifier = LinkVerifier.load(linker_dir / "verifier.json")
    prep = prepare(read_jsonl(TEST_SPLIT), make_extractor(True), CACHE / "entities-test.jsonl")
    _, pairs, _ = split_pairs(load_encoder(linker_dir), prep, verifier)
    p = verifier.probability(verifier.matrix(pairs.features))
    y = pairs.label
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum((bins == b).mean() * abs(p[bins == b].mean() - y[bins == b].mean()) for b in range(10) if (bins == b).any())
    assert ece < 0.05
    assert y[p >= 0.9].mean() >= 0.85  # confident links are mostly right
    assert y[p < 0.1].mean() <= 0.01  # confident non-links are almost never duplicates
    assert abs(p.sum() - y.sum()) / y.sum() < 0.25  # expected and actual number of duplicates agree
