"""ONNX Runtime at serving time, in one place: a CPU session with the settings' thread counts
(`OnnxThreads`, the rerank group's `onnx`), and a graph run by input name, each input cast to the
type the graph declares.

The graphs' names are the contract with their export (reranker/training/export.py), so they are
written here, on the serving side, and the export imports them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.settings import OnnxThreads

__all__ = ["CONTEXT_INPUTS", "CONTEXT_OUTPUTS", "OnnxBermO", "OnnxContext", "OnnxGraph", "OnnxThreads", "PAIR_INPUTS",
           "PAIR_OUTPUTS", "QUERY_INPUTS", "QUERY_ROWS", "open_session"]

# BERM-O's online half (pair.onnx): tokens, vectors, precomputed contexts, BM25 -> score and parts
PAIR_INPUTS = ("q_tokens", "i_tokens", "q_vec", "i_vec", "q_ctx", "q_ctx_w", "q_has",
               "i_ctx", "i_ctx_w", "i_has", "bm25", "t_vec")  # t_vec: only in graphs of models that read it
PAIR_OUTPUTS = ("score", "zero_order", "k_order")
# the query's own inputs: one row for the whole request in graphs whose first axis is QUERY_ROWS
QUERY_INPUTS = ("q_tokens", "q_vec", "q_ctx", "q_ctx_w", "q_has", "t_vec")
QUERY_ROWS = "nq"
# one side's offline half (query_ctx.onnx, item_ctx.onnx): node + neighbors -> context, attention
CONTEXT_INPUTS = ("node_vec", "nb_vec", "nb_w", "nb_mask")
CONTEXT_OUTPUTS = ("ctx", "ctx_w", "has", "attention")

_DTYPES = {"tensor(int64)": np.int64, "tensor(float)": np.float32}


def open_session(path: Path, threads: OnnxThreads | None = None):
    """An onnxruntime.InferenceSession on the CPU with `threads` (default: the settings' defaults)."""
    import onnxruntime as ort  # not at import time: the server's light modules import this one

    threads = threads or OnnxThreads()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads.intra_threads
    options.inter_op_num_threads = threads.inter_threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxGraph:
    """One exported graph: `run_named(**inputs)` -> its `outputs`, in order, as numpy arrays."""

    def __init__(self, path: Path, outputs: tuple[str, ...], threads: OnnxThreads | None = None) -> None:
        self.session = open_session(path, threads)
        self.outputs = list(outputs)
        # inputs the exporter pruned (unused by the graph) are not fed
        self.input_types = {i.name: _DTYPES.get(i.type, np.float32) for i in self.session.get_inputs()}

    def run_named(self, **inputs: np.ndarray) -> list[np.ndarray]:
        feed = {name: np.ascontiguousarray(value, dtype=self.input_types[name])
                for name, value in inputs.items() if name in self.input_types}
        return self.session.run(self.outputs, feed)


class OnnxBermO(OnnxGraph):
    """BERM-O's exported online half; same inputs and outputs as `BermO.forward_online`."""

    def __init__(self, path: Path, threads: OnnxThreads | None = None) -> None:
        super().__init__(path, PAIR_OUTPUTS, threads)
        # artifacts exported before the query side had its own rows want a row per pair
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.one_query_row = shapes.get("q_vec", [None])[0] == QUERY_ROWS

    def run(self, *values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, zero_order, k_order), float32 [N] each, from the inputs in PAIR_INPUTS order (a
        trailing t_vec may be left out, or None, for a graph without it). The query's inputs may have
        one row (repeated for every pair when the graph cannot broadcast)."""
        inputs = {name: value for name, value in zip(PAIR_INPUTS, values) if value is not None}
        n = len(inputs["i_vec"])
        for name in QUERY_INPUTS:
            value = inputs.get(name)
            if value is None:
                continue
            if len(value) != n and not self.one_query_row:
                inputs[name] = np.repeat(value, n, axis=0)
        score, zero_order, k_order = self.run_named(**inputs)
        return score, zero_order, k_order

    __call__ = run


class OnnxContext(OnnxGraph):
    """One side's exported context graph: (node_vec, nb_vec, nb_w, nb_mask) -> ctx, ctx_w, has, attention."""

    def __init__(self, path: Path, threads: OnnxThreads | None = None) -> None:
        super().__init__(path, CONTEXT_OUTPUTS, threads)

    def __call__(self, node_vec: np.ndarray, nb_vec: np.ndarray, nb_w: np.ndarray, nb_mask: np.ndarray) -> list[np.ndarray]:
        return self.run_named(node_vec=node_vec, nb_vec=nb_vec, nb_w=nb_w, nb_mask=nb_mask)
