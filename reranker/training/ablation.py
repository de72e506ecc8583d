"""The ablation: the served model (BERM-O) with each added part of the student switched off.

Each variant is the profile with some settings overridden, trained in its own run folder that
starts as a copy of the profile's run (so the teacher and any stage the variant does not change
are reused, see Pipeline). All variants' BERM-O artifacts are then evaluated together on the
profile's test queries, with paired tests against the full model and against BM25.
"""

from __future__ import annotations

from collections.abc import Callable

from reranker.training.rankers import OnlineRanker
from evaluation.rankers import BM25Ranker
from evaluation.runner import EvalResult, evaluate_rankers
from evaluation.significance import paired_tests
from reranker.serving.online import OnlineReranker
from reranker.training.pipeline import Pipeline

FULL_MODEL = "BERM-O, all parts"
# part -> (row name, the settings that switch it off)
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "cosine": ("BERM-O without the bi-encoder cosine", {"use_cosine": "false"}),
    "listwise": ("BERM-O without the listwise KL loss", {"listwise_weight": "0"}),
    "pseudo": ("BERM-O without pseudo-queries", {"pseudo_queries": "0"}),
    "top100": ("BERM-O with labels on BM25 top-50 (not 100)", {"label_k": "50"}),
    "query_encoder": ("BERM-O without the teacher-tuned query encoder", {"query_encoder": "false"}),
    "unlabeled": ("BERM-O without unlabeled queries", {"unlabeled_queries": "0"}),
    "word_vectors": ("BERM-O with random word vectors (not MiniLM's)", {"word_init": "random"}),
    "linear_start": ("BERM-O from a random start, last epoch kept", {"linear_start": "false", "select_epoch": "false"}),
}


def run_ablation(make_pipeline: Callable[[dict[str, str]], Pipeline], parts: list[str]) -> tuple[EvalResult, dict]:
    """Train the full model and each variant (until BERM-O), then evaluate them on the test queries.

    `make_pipeline(overrides)` returns the pipeline of the profile with those overrides.
    Returns the evaluation and the paired p-values (row -> "vs <other>" -> metric -> p).
    """
    base = make_pipeline({})
    base.run(until="berm_o")
    runs = {FULL_MODEL: base}
    for part in parts:
        name, overrides = VARIANTS[part]
        run = make_pipeline({**overrides, "k_order_ablation": "false"})
        run.run(until="berm_o")
        runs[name] = run
    rankers = [BM25Ranker()] + [OnlineRanker(OnlineReranker.load(run.root / "serving"), name=name)
                                for name, run in runs.items()]
    result = evaluate_rankers(base.es, base.alias, base.catalog, base.test_q, rankers, side="test",
                              split_id=base.split.split_id, depth=base.profile.bm25_depth)
    tests = paired_tests(result, [FULL_MODEL, BM25Ranker.name])
    return result, tests
