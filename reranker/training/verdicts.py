"""Guard rails: is each trained model better than the references a shop gets for free?

A model is `better` than a reference when its mean end-to-end NDCG@10 on dev is higher and a
paired t-test over dev queries gives p < ALPHA; `not significantly better` when higher but not
significant; `worse` otherwise. The served model is BERM-O; the pipeline says plainly when it does
not beat BM25 or the zero-shot bi-encoder, and the demo repeats it.
"""

from __future__ import annotations

ALPHA = 0.05
BM25 = "BM25 (Elasticsearch)"
BI_ENCODER = "bi-encoder cosine (zero-shot)"
REFERENCES = {BM25: "BM25", BI_ENCODER: "the zero-shot bi-encoder"}
SERVED = "BERM-O (ONNX)"


def verdict(delta: float, p: float) -> str:
    if delta > 0 and p < ALPHA:
        return "better"
    return "not significantly better" if delta > 0 else "worse"


def dev_verdicts(ndcg: dict[str, float], tests: dict[str, dict[str, dict[str, float]]]) -> dict:
    """From dev NDCG@10 per ranker and paired p-values (row -> "vs ref" -> "e2e ndcg@10" -> p):
    per model and reference the delta, p and verdict; `warnings`, one line per failed comparison;
    `served_is_better`, whether BERM-O beats both references."""
    models = {}
    warnings = []
    for name, value in ndcg.items():
        if name in REFERENCES:
            continue
        rows = {}
        for ref, label in REFERENCES.items():
            if ref not in ndcg:
                continue
            delta = value - ndcg[ref]
            p = tests.get(name, {}).get(f"vs {ref}", {}).get("e2e ndcg@10", float("nan"))
            rows[ref] = {"delta": delta, "p": p, "verdict": verdict(delta, p)}
            if rows[ref]["verdict"] != "better":
                warnings.append(f"{name} is {rows[ref]['verdict']} than {label} on dev "
                                f"(NDCG@10 {value:.4f} vs {ndcg[ref]:.4f}, p = {p:.3g})")
        models[name] = {"ndcg@10": value, "vs": rows}
    served = models.get(SERVED, {}).get("vs", {})
    return {"metric": "end-to-end NDCG@10 on dev (linear gain, unjudged = 0)", "alpha": ALPHA,
            "references": {ref: ndcg.get(ref) for ref in REFERENCES}, "models": models, "warnings": warnings,
            "served": SERVED,
            "served_is_better": bool(served) and all(r["verdict"] == "better" for r in served.values())}


def model_line(name: str, row: dict) -> str:
    """One line for a model of a dev check: its NDCG@10 and each comparison with its verdict and p."""
    parts = [f"{r['delta']:+.4f} vs {ref.split(' (')[0]} ({r['verdict']}, p = {r['p']:.2g})" for ref, r in row["vs"].items()]
    return f"{name}: dev NDCG@10 {row['ndcg@10']:.4f}; " + "; ".join(parts)
