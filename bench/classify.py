"""Classify-stage benchmark: `.venv/bin/python bench/classify.py [MODEL_DIR]` (same as `triage bench`)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.benchmark import run_bench  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    model = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("models/default")
    print(json.dumps(run_bench(model, with_fasttext=True), ensure_ascii=False, indent=1))
