"""Tiny synthetic training data and a tiny trained model for the training/serving model tests.

Synthetic petitions only (templates + fake places), never real citizen data.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

PLACES = ["渝中区解放碑", "江北区观音桥", "沙坪坝区三峡广场", "九龙坡区杨家坪", "南岸区南坪", "北碚区天生"]
TEMPLATES: dict[tuple[str, str, str], list[str]] = {
    ("admin_duty", "urban", "complaint"): [
        "{p}的烧烤店油烟很大，每天晚上噪音扰民，请城管执法部门查处。",
        "{p}小区门口占道经营，油烟熏得窗户都是黑的，希望城管来管一下。",
        "{p}有餐馆油烟直排，楼上住户没法开窗，请求依法处理油烟扰民问题。",
    ],
    ("litigation", "justice", "help"): [
        "{p}的朋友借了我{n}万元，写了借条，到期一直不还钱，我该怎么起诉？",
        "我在{p}和别人签了合同，对方违约不付货款{n}万元，想找法律援助打官司。",
        "{p}的亲戚借款{n}万元不还，借条还在，请问怎么申请法律援助起诉？",
    ],
    ("suggestion", "transport", "proposal"): [
        "建议在{p}增设公交站点，再开通一条公交线路，方便市民出行。",
        "{p}附近公交车太少，建议优化公交线路，增加早晚高峰班次。",
        "建议{p}的公交站台加装雨棚和线路牌，方便群众候车。",
    ],
}


def make_rows(n_per_class: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for (track, dept, rtype), templates in TEMPLATES.items():
        for i in range(n_per_class):
            text = rng.choice(templates).format(p=rng.choice(PLACES), n=rng.randint(2, 30))
            if rng.random() < 0.5:
                text += rng.choice(["谢谢！", "盼回复。", "麻烦尽快处理。", "已经反映过一次。"])
            rows.append({"id": f"{prefix}-{track}-{i}", "text": text, "track": track, "department": dept,
                         "request_type": rtype, "flags": [], "district": None, "duplicate_of": None,
                         "unknown_extra": {"nested": [1, "x"]}})
    rng.shuffle(rows)
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


TINY_CONFIG = """
seed = 7
class_weight = "balanced"
parity_tolerance = 1e-4
parity_rows = 100
[calibration]
method = "temperature_bias"
folds = 3
[[members]]
name = "char"
analyzer = "char"
ngram_min = 1
ngram_max = 2
min_df = 1
max_features = 3000
classifier = "svc"
C = 1.0
[[members]]
name = "word"
analyzer = "word"
ngram_min = 1
ngram_max = 2
min_df = 1
max_features = 2000
classifier = "lr"
C = 10.0
weight = 0.5
"""


def tiny_dataset(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "tiny.toml"
    config.write_text(TINY_CONFIG, encoding="utf-8")
    return {
        "train": write_jsonl(root / "train.jsonl", make_rows(20, 1, "tr")),
        "dev": write_jsonl(root / "dev.jsonl", make_rows(6, 2, "dv")),
        "test": write_jsonl(root / "test.jsonl", make_rows(6, 3, "te")),
        "config": config,
    }


def train_tiny(root: Path, out: Path, fields: tuple[str, ...] = ("track", "department", "request_type"),
               train_file: Path | None = None, overrides: list[str] | None = None):  # type: ignore[no-untyped-def]
    """Train a tiny model with the library function (what `triage train` calls)."""
    from training.train import TrainRequest, train

    files = tiny_dataset(root)
    return train(TrainRequest(data=[train_file or files["train"]], fields=list(fields), out_dir=out,
                              dev=[files["dev"]], config_path=files["config"], overrides=overrides or []))
