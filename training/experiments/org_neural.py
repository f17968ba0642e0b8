"""The organisation tagger's sequence layer (training/orgs_neural.py), weighed out-of-fold (issue 6, orgs-6).

    .venv/bin/python -m training.experiments.org_oof --states --save-taggers var/taggers/base   # the fold CRFs, once
    .venv/bin/python -m training.experiments.org_neural --crf var/taggers/base [--only 0,3] [--weights 0 0.5 1 2]
        [--arch lstm|cnn] [--hidden 96] [--proj 128] [--epochs 6] [--seed 0] [--supplement] [--real] [--alone]
        [--all-chunks] [--save-taggers DIR] [--json var/oof/neural.json]
    # orgs-6: --supplement --arch cnn --hidden 64 --proj 128, weight 2

The same yardstick as training.experiments.org_oof (folds by record group over written train+dev, the whole served
extractor, the test split never read): for each fold, a sequence layer is fitted on the other folds and added, times each
weight, to that fold's feature CRF — the served OrgTagger with a SequenceLayer, exactly as it ships. Weight 0 is the
fold CRF alone (org_oof's own figure, reproduced), "alone" the layer without the feature CRF's scores. The layer reads
only the chunks touching an organisation candidate, as served (`--all-chunks`: every chunk, as the session's first
runs did). `--save-taggers DIR` keeps each fold's combined tagger for decode-time experiments (entities-9 was chosen
on orgs-6's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.experiments.org_oof import CachedWordStates, emit, f1, org_counts, outer_fold
from training.orgs import CORPUS, load_examples, load_real_examples, load_supplement_examples
from training.orgs_neural import train_sequence_layer
from triage.entities import EntityExtractor
from triage.orgs import OrgTagger, SequenceLayer
from triage.taxonomy import load_taxonomy


def combined(crf: OrgTagger, layer: SequenceLayer, weight: float, all_chunks: bool = False) -> OrgTagger:
    return OrgTagger(crf.weights_, crf.transitions_, crf.bits, crf.version + "+seq", crf.lexicon, crf.state_layer,
                     SequenceLayer(layer.a, layer.chars, layer.labels, weight, all_chunks))


def alone(crf: OrgTagger, layer: SequenceLayer) -> OrgTagger:
    """The sequence layer's own scores and transitions only, on every chunk (the feature CRF's weights zeroed, its
    lexicon kept: with the CRF gone, a chunk the layer skipped would have no scores at all)."""
    return OrgTagger(np.zeros_like(crf.weights_), np.zeros_like(crf.transitions_), crf.bits, "seq-alone", crf.lexicon,
                     type(crf.state_layer)(crf.state_layer.coef, crf.state_layer.bias,  # type: ignore[union-attr]
                                           np.zeros_like(crf.state_layer.weights)),  # type: ignore[union-attr]
                     SequenceLayer(layer.a, layer.chars, layer.labels, 1.0, all_chunks=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crf", type=Path, required=True, help="org_oof --save-taggers DIR")
    ap.add_argument("--only", default="0,1,2,3,4")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    ap.add_argument("--alone", action="store_true", help="also score the sequence layer alone (on every chunk)")
    ap.add_argument("--all-chunks", action="store_true",
                    help="the layer reads every chunk, not only those touching a candidate (as served; session 15's "
                         "runs before `candidate_chunks` existed read every chunk)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dropout", type=float, default=0.4)
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--proj", type=int, default=128)
    ap.add_argument("--arch", choices=("lstm", "cnn"), default="lstm")
    ap.add_argument("--supplement", action="store_true",
                    help="also fit the sequence layer (not the fold CRFs) on the organisation supplement")
    ap.add_argument("--real", action="store_true",
                    help="also fit the sequence layer on the real messages read for organisations (data/corpus/real)")
    ap.add_argument("--save-taggers", type=Path, metavar="DIR",
                    help="also save each fold's combined tagger as DIR/fold<k>-w<weight>.npz (for decode-time experiments)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()


    from serving.ner import LacTagger

    taxonomy = load_taxonomy()
    lac = LacTagger()
    rules = EntityExtractor(taxonomy.gazetteer, lac, departments=taxonomy.responsibilities.values(), org_tagger=None)
    examples = load_examples("train", rules, lac, True) + load_examples("dev", rules, lac, True)
    records = [json.loads(line) for split in ("train", "dev")
               for line in (CORPUS / f"{split}.jsonl").open(encoding="utf-8") if line.strip()]
    cached = CachedWordStates(lac.version, {x.text: x.words for x in examples}, {x.text: x.states for x in examples})
    fold_of = [outer_fold(x.group, 5) for x in examples]
    extra = load_supplement_examples(rules, lac, True) if args.supplement else []
    extra += load_real_examples(rules, lac, True) if args.real else []
    out: dict[str, Any] = {"epochs": args.epochs, "seed": args.seed, "dropout": args.dropout, "hidden": args.hidden,
                           "proj": args.proj, "arch": args.arch, "supplement": args.supplement, "real": args.real,
                           "all_chunks": args.all_chunks,
                           "by_weight": {}}
    for k in [int(v) for v in args.only.split(",")]:
        t0 = time.perf_counter()
        layer = train_sequence_layer([x for x, f in zip(examples, fold_of, strict=True) if f != k] + extra, 1.0, args.epochs,
                                     args.seed, args.dropout, args.hidden, log=f"fold {k}", proj=args.proj,
                                     arch=args.arch)
        crf = OrgTagger.load(args.crf / f"fold{k}-of5.npz")
        held_out = [r for r, f in zip(records, fold_of, strict=True) if f == k]
        taggers = {str(w): combined(crf, layer, w, args.all_chunks) for w in args.weights}
        if args.alone:
            taggers["alone"] = alone(crf, layer)
        if args.save_taggers:
            for name, tagger in taggers.items():
                tagger.save(args.save_taggers / f"fold{k}-w{name}.npz", {"fold": k, "folds": 5})
        for name, tagger in taggers.items():
            served = EntityExtractor(taxonomy.gazetteer, cached, departments=taxonomy.responsibilities.values(),
                                     org_tagger=tagger)
            counts = org_counts(served, held_out)
            out["by_weight"].setdefault(name, {})[k] = {"tp_fp_fn": counts, "f1": f1(*counts)}
            print(f"fold {k} weight {name}: {counts} {f1(*counts)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                  flush=True)
    for by_fold in out["by_weight"].values():
        pooled = [sum(v["tp_fp_fn"][i] for v in by_fold.values()) for i in range(3)]
        by_fold["pooled"] = {"tp_fp_fn": pooled, "f1": f1(*pooled)}
    emit(out, args.json)


if __name__ == "__main__":
    main()
