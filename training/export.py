"""Export a fitted head to ONNX and check parity with the scikit-learn model.

The graph takes the segmented text (string tensor [N, 1], input "text") and returns
"probabilities" [N, K]: vectorisers, linear scores, calibration and softmax are all inside it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline

from triage.errors import ArtifactMismatchError

logger = logging.getLogger(__name__)

TARGET_OPSET = 17


def pipeline_to_onnx(pipeline: Pipeline) -> bytes:
    """Convert FeatureUnion(TfidfVectorizer…) → LogisticRegression to ONNX bytes."""
    import warnings

    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    options: dict[int, dict[str, object]] = {id(pipeline.steps[-1][1]): {"zipmap": False}}
    for _, vec in pipeline.named_steps["features"].transformer_list:
        if isinstance(vec, TfidfVectorizer) and vec.analyzer == "word":
            options[id(vec)] = {"separators": [" "]}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The conversion of CountVectorizer may not work")
        onx = convert_sklearn(
            pipeline,
            initial_types=[("text", StringTensorType([None, 1]))],
            options=options,
            target_opset={"": TARGET_OPSET, "ai.onnx.ml": 3},
            final_types=None,
        )
    return bytes(rewrite_linear_tail(onx).SerializeToString())


def rewrite_linear_tail(model):  # type: ignore[no-untyped-def]  # onnx.ModelProto in and out
    """Replace skl2onnx's L2 Normalizer → Concat → LinearClassifier → Normalizer tail by fast standard ops.

    Per member m with TF-IDF vector x_m: s_m = MatMul(x_m, W_mᵀ) / max(‖x_m‖₂, ε); probabilities =
    Softmax(Σ_m s_m + b). Mathematically identical (row scaling commutes with the matrix product), but
    it avoids three dense passes of the ai.onnx.ml operators, which are not vectorised (measured: the
    Normalizer and LinearClassifier took 0.3 of 0.56 ms per 500-character text). The "label" output is
    dropped: serving reads probabilities and takes labels from the manifest.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    nodes = list(g.node)
    by_type = {n.op_type: n for n in nodes}
    lin = by_type.get("LinearClassifier")
    concat = by_type.get("Concat")
    if lin is None or concat is None:
        return model
    l2 = {n.output[0]: n for n in nodes if n.op_type == "Normalizer"
          and helper.get_attribute_value(next(a for a in n.attribute if a.name == "norm")) == b"L2"}
    members = [l2[name].input[0] for name in concat.input]  # idf-weighted TF per member, in union order
    attrs = {a.name: helper.get_attribute_value(a) for a in lin.attribute}
    labels = attrs["classlabels_strings"]
    k = len(labels)
    coef = np.asarray(attrs["coefficients"], dtype=np.float32).reshape(k, -1)
    intercepts = np.asarray(attrs["intercepts"], dtype=np.float32)
    idf_of = {n.output[0]: n.input[1] for n in nodes if n.op_type == "Mul"}
    inits = {i.name: i for i in g.initializer}
    widths = [int(numpy_helper.to_array(inits[idf_of[m]]).size) for m in members]
    if sum(widths) != coef.shape[1]:
        raise ArtifactMismatchError(f"feature widths {widths} do not add up to {coef.shape[1]} coefficients")
    post = attrs.get("post_transform", b"NONE")
    if post == b"LOGISTIC":
        if k != 2:
            raise ArtifactMismatchError("one-vs-rest logistic heads are not supported; use a multinomial head")
        # Binary LR is converted as rows [-w, w] with a logistic: p1 = σ(z) = softmax([0, z])[1].
        coef = np.vstack([np.zeros_like(coef[1]), coef[1]])
        intercepts = np.array([0.0, intercepts[1]], dtype=np.float32)
    elif post != b"SOFTMAX":
        raise ArtifactMismatchError(f"unexpected LinearClassifier post_transform {post!r}")
    drop = {id(lin), id(concat)} | {id(n) for n in l2.values()} | {
        id(n) for n in nodes if n.op_type == "Normalizer" and n.input[0] in lin.output}
    keep = [n for n in nodes if id(n) not in drop]
    new_nodes, new_inits, parts = [], [numpy_helper.from_array(np.array([1e-12], dtype=np.float32), "l2_eps")], []
    start = 0
    for i, (member, width) in enumerate(zip(members, widths, strict=True)):
        w = np.ascontiguousarray(coef[:, start:start + width].T)
        start += width
        new_inits.append(numpy_helper.from_array(w, f"coef_{i}"))
        new_nodes += [
            helper.make_node("MatMul", [member, f"coef_{i}"], [f"raw_{i}"]),
            helper.make_node("ReduceL2", [member], [f"norm_{i}"], axes=[1], keepdims=1),
            helper.make_node("Max", [f"norm_{i}", "l2_eps"], [f"normc_{i}"]),
            helper.make_node("Div", [f"raw_{i}", f"normc_{i}"], [f"score_{i}"]),
        ]
        parts.append(f"score_{i}")
    new_inits.append(numpy_helper.from_array(intercepts.astype(np.float32), "intercept"))
    total = parts[0]
    for j, part in enumerate(parts[1:]):
        new_nodes.append(helper.make_node("Add", [total, part], [f"sum_{j}"]))
        total = f"sum_{j}"
    new_nodes += [helper.make_node("Add", [total, "intercept"], ["logits"]),
                  helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, max(k, 2)])
    graph = helper.make_graph(keep + new_nodes, g.name, list(g.input), [out],
                              [i for i in g.initializer] + new_inits)
    new_model = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="petition-triage")
    new_model.ir_version = model.ir_version
    onnx.checker.check_model(new_model)
    return new_model


def onnx_session(model: bytes | Path, threads: int = 1):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_proba(session, texts: list[str]) -> npt.NDArray[np.float32]:  # type: ignore[no-untyped-def]
    feeds = {"text": np.asarray(texts, dtype=object).reshape(-1, 1)}
    return np.asarray(session.run(["probabilities"], feeds)[0])


def check_parity(pipeline: Pipeline, model: bytes, texts: list[str], tolerance: float) -> float:
    """max |p_onnx − p_sklearn| over `texts`.

    Raises:
        ArtifactMismatchError: the difference exceeds `tolerance` or the label order differs.
    """
    session = onnx_session(model)
    p_onnx = onnx_proba(session, texts)
    p_skl = pipeline.predict_proba(texts)
    if p_onnx.shape != p_skl.shape:
        raise ArtifactMismatchError(f"ONNX output shape {p_onnx.shape} differs from scikit-learn {p_skl.shape}")
    diff = float(np.abs(p_onnx - p_skl).max()) if len(texts) else 0.0
    logger.info("parity on %d texts: max abs difference %.2e", len(texts), diff)
    if diff >= tolerance:
        raise ArtifactMismatchError(
            f"ONNX probabilities differ from scikit-learn by {diff:.2e} (tolerance {tolerance:.0e}); "
            "the graph is not exported faithfully. Check the vectoriser options in training/config.py."
        )
    return diff


def write_onnx(model: bytes, path: Path) -> None:
    path.write_bytes(model)


# --- one graph for all heads, vectorisers shared ----------------------------------------------


def vectorizer_key(vec: TfidfVectorizer) -> str:
    """Fingerprint of a fitted vectoriser: heads whose members have the same one share its nodes."""
    import hashlib

    h = hashlib.sha256()
    h.update(repr((vec.analyzer, vec.ngram_range, vec.binary, vec.lowercase, vec.token_pattern)).encode())
    for gram, idx in sorted(vec.vocabulary_.items()):
        h.update(f"{gram}\x00{idx}\x01".encode())
    h.update(np.asarray(vec.idf_, dtype=np.float64).tobytes())
    return h.hexdigest()


def _vectorizer_nodes(vec: TfidfVectorizer, prefix: str, *, binary_indicator: bool = False):  # type: ignore[no-untyped-def]
    """skl2onnx nodes of one vectoriser, names prefixed.

    Returns (nodes, initialisers, output name, opsets, idf). By default the output is the
    idf-weighted TF (before L2). With `binary_indicator` (binary vectorisers only) the graph stops
    at the TfIdfVectorizer op, switched to mode "IDF" with unit weights, so its output is the 0/1
    presence matrix itself (no Cast/Cast/Mul passes over the dense [N, F] matrix); the caller folds
    the idf into the next MatMul.
    """
    import warnings

    from onnx import numpy_helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    options = {id(vec): {"separators": [" "]}} if vec.analyzer == "word" else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The conversion of CountVectorizer may not work")
        onx = convert_sklearn(vec, initial_types=[("text", StringTensorType([None, 1]))], options=options,
                              target_opset={"": TARGET_OPSET, "ai.onnx.ml": 3})
    g = onx.graph
    nodes = list(g.node)
    inits_by_name = {i.name: i for i in g.initializer}
    cut = next(i for i, n in enumerate(nodes) if n.op_type == "Normalizer")
    norm = nodes[cut]
    mul = next(n for n in nodes if n.op_type == "Mul" and n.output[0] == norm.input[0])
    idf = numpy_helper.to_array(next(inits_by_name[x] for x in mul.input if x in inits_by_name)).astype(np.float64).ravel()
    if binary_indicator:
        if not vec.binary:
            raise ValueError("binary_indicator needs a binary vectoriser")
        k = next(i for i, n in enumerate(nodes) if n.op_type == "TfIdfVectorizer")
        tfidf_node = nodes[k]
        for a in tfidf_node.attribute:
            if a.name == "mode":
                a.s = b"IDF"
            elif a.name == "weights":
                del a.floats[:]
                a.floats.extend([1.0] * len(idf))
        keep, out_name = nodes[: k + 1], tfidf_node.output[0]
    else:
        keep, out_name = nodes[:cut], norm.input[0]  # nodes are in topological order; drop the L2 and what follows
    used = {name for n in keep for name in n.input}
    rename = {name: prefix + name for n in keep for name in list(n.output)}
    rename.update({i.name: prefix + i.name for i in g.initializer})
    for n in keep:
        for j, name in enumerate(n.input):
            n.input[j] = rename.get(name, name)
        for j, name in enumerate(n.output):
            n.output[j] = rename[name]
        n.name = prefix + (n.name or n.op_type)
    inits = [i for i in g.initializer if i.name in used]
    for init in inits:
        init.name = rename[init.name]
    return keep, inits, rename[out_name], list(onx.opset_import), idf


def heads_to_onnx(heads: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """One graph computing every head; identical vectorisers are computed once.

    Input "text" (segmented text, [N, 1]); output "probabilities_<field>" per head ([N, K]):
    Softmax(Σ_members (x_v · W_m) / max(‖x_v‖₂, ε) + b) with x_v the TF-IDF of the member's
    vectoriser v and the head's calibration (temperature, biases) already in W and b.

    Binary vectorisers (all of base.toml) are fused: the TfIdfVectorizer op yields the 0/1 presence
    matrix P, and ONE MatMul per vectoriser computes every head's scores and the norm together:
    P · [diag(idf)·W_1 | … | diag(idf)·W_m | idf²], because x = P ⊙ idf and, P being 0/1,
    ‖x‖² = P · idf². That reads the dense [N, F] matrix once instead of once per head plus the
    Cast/Mul/ReduceL2 passes (measured in `triage bench`). Non-binary vectorisers keep the plain
    path (TF-IDF, ReduceL2, one MatMul per member). Returns the bytes and field → output name.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = [numpy_helper.from_array(np.array([1e-12], dtype=np.float32), "l2_eps")]
    opsets: dict[str, int] = {}
    # Pass 1: distinct vectorisers and, per vectoriser, its users (field, member index).
    vec_of: dict[str, Any] = {}
    users: dict[str, list[tuple[str, int]]] = {}
    for fld, head in heads.items():
        for j, fm in enumerate(head.members_):
            key = vectorizer_key(fm.vectorizer)
            vec_of.setdefault(key, fm.vectorizer)
            users.setdefault(key, []).append((fld, j))
    parts: dict[str, list[str]] = {fld: [] for fld in heads}
    for v, (key, vec) in enumerate(vec_of.items()):
        fused = bool(vec.binary)
        vnodes, vinits, out, ops, idf = _vectorizer_nodes(vec, f"v{v}_", binary_indicator=fused)
        nodes += vnodes
        inits += vinits
        for op in ops:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
        if fused:
            blocks, spans, start = [], [], 0
            for fld, j in users[key]:
                head = heads[fld]
                w = (head.members_[j].coef / head.temperature_).T * idf[:, None]  # [F, K]
                blocks.append(w)
                spans.append((fld, start, start + w.shape[1]))
                start += w.shape[1]
            blocks.append((idf ** 2)[:, None])
            w_all = np.ascontiguousarray(np.hstack(blocks).astype(np.float32))
            inits += [numpy_helper.from_array(w_all, f"v{v}_coef"),
                      numpy_helper.from_array(np.array([start], dtype=np.int64), f"v{v}_nsq_start"),
                      numpy_helper.from_array(np.array([start + 1], dtype=np.int64), f"v{v}_nsq_end"),
                      numpy_helper.from_array(np.array([1], dtype=np.int64), f"v{v}_axis1")]
            nodes += [helper.make_node("MatMul", [out, f"v{v}_coef"], [f"v{v}_all"]),
                      helper.make_node("Slice", [f"v{v}_all", f"v{v}_nsq_start", f"v{v}_nsq_end", f"v{v}_axis1"],
                                       [f"v{v}_sq"]),
                      helper.make_node("Sqrt", [f"v{v}_sq"], [f"v{v}_l2"]),
                      helper.make_node("Max", [f"v{v}_l2", "l2_eps"], [f"v{v}_norm"])]
            for u, (fld, a, b) in enumerate(spans):
                inits += [numpy_helper.from_array(np.array([a], dtype=np.int64), f"v{v}_u{u}_start"),
                          numpy_helper.from_array(np.array([b], dtype=np.int64), f"v{v}_u{u}_end")]
                nodes += [helper.make_node("Slice", [f"v{v}_all", f"v{v}_u{u}_start", f"v{v}_u{u}_end", f"v{v}_axis1"],
                                           [f"v{v}_u{u}_raw"]),
                          helper.make_node("Div", [f"v{v}_u{u}_raw", f"v{v}_norm"], [f"v{v}_u{u}_score"])]
                parts[fld].append(f"v{v}_u{u}_score")
        else:
            nodes += [helper.make_node("ReduceL2", [out], [f"v{v}_l2"], axes=[1], keepdims=1),
                      helper.make_node("Max", [f"v{v}_l2", "l2_eps"], [f"v{v}_norm"])]
            for u, (fld, j) in enumerate(users[key]):
                head = heads[fld]
                w = np.ascontiguousarray((head.members_[j].coef / head.temperature_).T.astype(np.float32))
                inits.append(numpy_helper.from_array(w, f"v{v}_u{u}_coef"))
                nodes += [helper.make_node("MatMul", [out, f"v{v}_u{u}_coef"], [f"v{v}_u{u}_raw"]),
                          helper.make_node("Div", [f"v{v}_u{u}_raw", f"v{v}_norm"], [f"v{v}_u{u}_score"])]
                parts[fld].append(f"v{v}_u{u}_score")
    outputs, out_names = [], {}
    for fld, head in heads.items():
        intercept = sum(fm.intercept for fm in head.members_) / head.temperature_ + head.bias_
        inits.append(numpy_helper.from_array(np.asarray(intercept, dtype=np.float32), f"{fld}_intercept"))
        total = parts[fld][0]
        for j, part in enumerate(parts[fld][1:]):
            nodes.append(helper.make_node("Add", [total, part], [f"{fld}_sum_{j}"]))
            total = f"{fld}_sum_{j}"
        out = f"probabilities_{fld}"
        nodes += [helper.make_node("Add", [total, f"{fld}_intercept"], [f"{fld}_logits"]),
                  helper.make_node("Softmax", [f"{fld}_logits"], [out], axis=1)]
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, len(head.classes_)]))
        out_names[fld] = out
    graph = helper.make_graph(nodes, "petition_triage_heads",
                              [helper.make_tensor_value_info("text", TensorProto.STRING, [None, 1])], outputs, inits)
    opsets[""] = max(opsets.get("", 0), TARGET_OPSET)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
                              producer_name="petition-triage")
    model.ir_version = 8
    onnx.checker.check_model(model)
    logger.info("one graph for %d heads with %d distinct vectorisers", len(heads), len(vec_of))
    return bytes(model.SerializeToString()), out_names


def check_parity_multi(pipelines: dict[str, Pipeline], model: bytes, outputs: dict[str, str],
                       texts: dict[str, list[str]], tolerance: float) -> dict[str, float]:
    """Per head: max |p_onnx − p_sklearn| on that head's parity texts (see `check_parity`)."""
    session = onnx_session(model)
    diffs = {}
    for fld, pipe in pipelines.items():
        rows = texts[fld]
        feeds = {"text": np.asarray(rows, dtype=object).reshape(-1, 1)}
        p_onnx = np.asarray(session.run([outputs[fld]], feeds)[0])
        p_skl = pipe.predict_proba(rows)
        if p_onnx.shape != p_skl.shape:
            raise ArtifactMismatchError(f"{fld}: ONNX output shape {p_onnx.shape} differs from scikit-learn {p_skl.shape}")
        diff = float(np.abs(p_onnx - p_skl).max()) if rows else 0.0
        logger.info("parity %s on %d texts: max abs difference %.2e", fld, len(rows), diff)
        if diff >= tolerance:
            raise ArtifactMismatchError(
                f"{fld}: ONNX probabilities differ from scikit-learn by {diff:.2e} (tolerance {tolerance:.0e}); "
                "the graph is not exported faithfully."
            )
        diffs[fld] = diff
    return diffs
