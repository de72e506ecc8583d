"""Teacher inference: pairs a second through torch, ONNX fp32 and ONNX int8, on the same pairs, in one run.

The pairs are the rerank benches' workload (bench/rerank.py): each query with its judged Home Depot
products, then random others, or a made-up catalog where the Home Depot data is missing. The
teacher is a trained teacher folder, or the base model with an untrained head (seeded): its speed
is a trained one's, its int8 agreement is not (an untrained head's logits spread ~0.02, the hard
case for quantisation). torch runs on its default threads (every core), ONNX Runtime on every core
(`offline_threads`).

Timing on a shared machine: the pairs go in chunks of CHUNK, and each chunk is scored by the three
backends back to back, in an order that rotates chunk by chunk; a backend's time is the sum over
chunks. Other work that comes and goes then slows all three alike, where timing each backend in
one block gave whichever ran in a quiet minute a 5x edge. Each backend's CPU seconds are kept too
(this process's, all threads): pairs per CPU second is the work itself, whatever the load.

Agreement is int8 against fp32 logits: Spearman over all pairs, the mean per-query Spearman the
pipeline's guard reads (reranker/training/int8_guard.py), and the largest logit shift; and fp32
against torch, the largest difference (the export itself).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.rerank import Workload

WARM_UP_PAIRS = 64
CHUNK = 256  # pairs scored by each backend in turn (8 batches of 32)


@dataclass
class TeacherRow:
    backend: str  # "torch", "onnx fp32", "onnx int8"
    pairs: int
    seconds: float  # wall clock, summed over the chunks
    pairs_per_s: float
    cpu_seconds: float  # this process's CPU time (every thread), summed over the chunks
    pairs_per_cpu_s: float


@dataclass
class TeacherBench:
    teacher: str
    workload: str
    pairs: int
    rows: list[TeacherRow]
    ratios: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    targets: dict[str, dict] = field(default_factory=dict)
    machine: dict[str, object] = field(default_factory=dict)


def workload_pairs(workload: Workload) -> tuple[list[str], list[str], list[int]]:
    """(queries, titles, query index) of every pair of the workload's lists."""
    queries, titles, group = [], [], []
    for i, (text, candidates) in enumerate(zip(workload.queries, workload.lists)):
        for c in candidates:
            queries.append(text), titles.append(workload.titles[c.product_id]), group.append(i)
    return queries, titles, group


def _timed(predict, queries: list[str], titles: list[str]) -> tuple[float, float, np.ndarray]:
    """(wall seconds, CPU seconds, scores) of one call."""
    began, cpu = time.perf_counter(), time.process_time()
    scores = predict(queries, titles)
    return time.perf_counter() - began, time.process_time() - cpu, scores


def agreement(fp32: np.ndarray, int8: np.ndarray, group: list[int]) -> dict[str, float]:
    from scipy.stats import spearmanr

    groups = np.asarray(group)
    rhos = []
    for g in np.unique(groups):
        a, b = fp32[groups == g], int8[groups == g]
        if len(a) > 1 and np.ptp(a) > 0 and np.ptp(b) > 0:
            rhos.append(float(spearmanr(a, b).statistic))
    return {"int8_vs_fp32_spearman_all_pairs": float(spearmanr(fp32, int8).statistic),
            "int8_vs_fp32_spearman_mean_per_query": float(np.mean(rhos)) if rhos else float("nan"),
            "int8_vs_fp32_spearman_min_per_query": float(np.min(rhos)) if rhos else float("nan"),
            "int8_vs_fp32_max_logit_shift": float(np.abs(fp32 - int8).max())}


def bench_teacher(teacher_dir: Path | None, workload: Workload, progress=lambda message: None) -> TeacherBench:
    """Pairs a second of the three backends on the workload's pairs, and int8's agreement with fp32."""
    import torch

    from reranker.models.teacher import Teacher
    from reranker.models.teacher_onnx import OnnxTeacher, TeacherOnnxError, offline_threads
    from reranker.training.export import export_teacher
    from reranker.training.profiles import Profile

    load_before = [round(x, 2) for x in os.getloadavg()]
    if teacher_dir is not None and not (Path(teacher_dir) / "teacher_config.json").is_file():
        raise TeacherOnnxError(f"--teacher {teacher_dir}: no trained teacher there (expected teacher_config.json, "
                               f"e.g. artifacts/pipeline/home-depot-quick/teacher)")
    if teacher_dir is not None:
        teacher, source = Teacher.load(teacher_dir), str(teacher_dir)
    else:
        teacher, source = Teacher.from_base(seed=0), "untrained: Teacher.from_base(seed=0), no --teacher given"
    queries, titles, group = workload_pairs(workload)
    with tempfile.TemporaryDirectory(prefix="bench-teacher-") as folder:
        progress(f"exporting the teacher to ONNX (fp32, int8) in {folder}")
        paths = export_teacher(teacher, Path(folder))
        backends = {"torch": teacher.predict}
        for precision in ("fp32", "int8"):
            onnx = OnnxTeacher(paths[precision], teacher.tokenizer, teacher.config, precision, offline_threads())
            backends[f"onnx {precision}"] = onnx.predict
        for predict in backends.values():
            predict(queries[:WARM_UP_PAIRS], titles[:WARM_UP_PAIRS])
        names = list(backends)
        wall, cpu = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
        scores = {name: np.zeros(len(queries), dtype=np.float32) for name in names}
        progress(f"scoring {len(queries):,} pairs with {', '.join(names)}, {CHUNK} pairs each in turn")
        for k, start in enumerate(range(0, len(queries), CHUNK)):
            stop = min(start + CHUNK, len(queries))
            for name in names[k % len(names):] + names[:k % len(names)]:
                seconds, cpu_seconds, scores[name][start:stop] = _timed(backends[name], queries[start:stop],
                                                                        titles[start:stop])
                wall[name] += seconds
                cpu[name] += cpu_seconds
    rows = [TeacherRow(name, len(queries), wall[name], len(queries) / wall[name], cpu[name],
                       len(queries) / cpu[name]) for name in names]
    by = {row.backend: row for row in rows}
    result = TeacherBench(source, workload.source, len(queries), rows)
    result.ratios = {"onnx fp32 / torch pairs a second": by["onnx fp32"].pairs_per_s / by["torch"].pairs_per_s,
                     "onnx int8 / torch pairs a second": by["onnx int8"].pairs_per_s / by["torch"].pairs_per_s,
                     "onnx int8 / onnx fp32 pairs a second": by["onnx int8"].pairs_per_s / by["onnx fp32"].pairs_per_s,
                     "onnx int8 / torch pairs a CPU second":
                         by["onnx int8"].pairs_per_cpu_s / by["torch"].pairs_per_cpu_s}
    result.agreement = agreement(scores["onnx fp32"], scores["onnx int8"], group)
    result.agreement["fp32_vs_torch_max_abs_diff"] = float(np.abs(scores["onnx fp32"] - scores["torch"]).max())
    min_spearman = {f.name: f.default for f in dataclasses.fields(Profile)}["int8_min_spearman"]
    gain = result.ratios["onnx int8 / torch pairs a second"]
    rho = result.agreement["int8_vs_fp32_spearman_mean_per_query"]
    result.targets = {
        "int8 >= 3x torch's pairs a second": {"value": gain, "met": gain >= 3.0},
        f"int8 mean per-query Spearman with fp32 >= {min_spearman} (the guard's, on these pairs)":
            {"value": rho, "met": rho >= min_spearman},
    }
    result.machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                      "torch_threads": torch.get_num_threads(), "onnx_intra_threads": offline_threads().intra_threads,
                      "load_average_start": load_before, "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    return result


def as_dict(result: TeacherBench) -> dict:
    return asdict(result)


def print_teacher(result: TeacherBench, console) -> None:
    from rich.table import Table

    table = Table(title=f"Teacher inference: {result.pairs:,} pairs ({result.workload}, {result.machine['cpus']} CPUs)",
                  title_justify="left")
    for column in ("backend", "pairs", "seconds", "pairs/s", "CPU s", "pairs/CPU s"):
        table.add_column(column, justify="left" if column == "backend" else "right", no_wrap=True)
    for row in result.rows:
        table.add_row(row.backend, f"{row.pairs:,}", f"{row.seconds:.2f}", f"{row.pairs_per_s:,.0f}",
                      f"{row.cpu_seconds:.2f}", f"{row.pairs_per_cpu_s:,.0f}")
    console.print(table)
    machine = result.machine
    console.print(f"teacher: {result.teacher}; threads: torch {machine['torch_threads']}, ONNX Runtime "
                  f"{machine['onnx_intra_threads']}; load average {machine['load_average_start']} at the start, "
                  f"{machine['load_average_end']} at the end, on {machine['cpus']} CPUs (others' work shares them)",
                  highlight=False)
    for name, value in result.ratios.items():
        console.print(f"{name}: {value:.2f}x", highlight=False)
    for name, value in result.agreement.items():
        console.print(f"{name.replace('_', ' ')}: {value:.4g}", highlight=False)
    for name, target in result.targets.items():
        shown = f"{target['value']:.2f}x" if name.startswith("int8 >=") else f"{target['value']:.4f}"
        console.print(f"target {name}: {shown} -> {'met' if target['met'] else 'NOT met'}", highlight=False)
