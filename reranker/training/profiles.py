"""The pipeline's profiles (how big a run is) and their KEY=VALUE overrides.

A profile sizes every stage of reranker/training/pipeline.py; `STAGE_SETTINGS` says at which stage
a setting first matters, so changing it redoes that stage and what follows, never the teacher
before it. `--set KEY=VALUE` goes through `with_overrides` (parsed by the field's type, unknown
keys refused) and names its own run folder (`run_name`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from reranker.training.errors import PipelineError
from reranker.training.teacher_train import TeacherTrainConfig


@dataclass
class Profile:
    name: str
    teacher: TeacherTrainConfig
    train_queries: int | None  # train queries used for labeling, graph and students (None: all)
    dev_queries: int | None
    test_queries: int | None
    label_k: int = 100  # BM25 top-K of each train query scored by the teacher (all that serving reranks)
    pseudo_queries: int = 0  # extra unlabeled queries cut from product titles, teacher-scored
    pseudo_k: int = 30  # BM25 top-K of each pseudo-query scored by the teacher
    # train-split queries the students never see the grades of (nor the teacher trained on): their
    # BM25 top-K, teacher-scored, is more distillation data (the paper's "massive unlabeled data")
    unlabeled_queries: int = 0
    unlabeled_k: int = 30
    query_encoder: bool = True  # the teacher-distilled query encoder, read by the students (query_encoder.py)
    query_encoder_epochs: int = 6
    bm25_depth: int = 100
    mix_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # BM25 weight in the deployed teacher
    # bi-encoder cosine weight (the cross-encoder keeps >= 0.1); up to 0.8: quick's dev chose 0.5, the
    # edge of a grid that ended there
    cosine_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    # the teacher is scored through ONNX int8 only within these on dev, else fp32 (reranker/training/int8_guard.py)
    int8_max_ndcg_drop: float = 0.003  # the deployed teacher's dev NDCG@10, fp32 minus int8
    int8_min_spearman: float = 0.97  # mean per-query Spearman of int8 with fp32 logits
    student_epochs: int = 6
    use_cosine: bool = True  # the students' 0-order part also reads the bi-encoder cosine of query and item
    # how the students' word embeddings start: "random", or MiniLM's static vectors (word_vectors.py);
    # unweighted: model2vec's frequency weights shrink common words ("white": 0.06 against 7.9)
    word_init: str = "minilm-unweighted"
    # students start as the least-squares fit of their targets on BM25 and the cosines, words and
    # graph silent (reranker/training/linear_start.py), and keep the epoch with the best dev NDCG@10
    # (the start included): a random start lost the teacher's BM25 + cosine gain on held-out queries
    linear_start: bool = True
    select_epoch: bool = True
    listwise_weight: float = 1.0  # listwise KL to the teacher per query (reranker/training/distill.py)
    listwise_temperature: float = 1.0
    confident_edge: float = 0.8  # teacher sigmoid above which a BM25 candidate joins the graph
    # a click graph from the shop's own behaviour logs (`shopsearch logs export --graph`, corrected
    # for position bias); its train queries' edges replace the teacher's for the pairs it holds
    graph_file: str | None = None
    per_path: int = 5  # sampled neighbors per metapath
    all_products: bool = True  # embed the whole catalog (else only products some query retrieves)
    speed_queries: int = 50  # test queries timed again for the repeated-query speed column
    k_order_ablation: bool = True  # also train BERM without k-order (ablation runs skip it)
    embed_batch_size: int = 256  # bi-encoder texts a batch in the faiss stage (memory, not results)
    seed: int = 13
    teacher_from: str | None = None  # start the teacher from this trained teacher folder (another shop's)


# Settings that first matter at a later stage enter the digest chain there, so changing them redoes
# that stage and what follows, never the (long) teacher before it.
STAGE_SETTINGS = {
    "teacher_mix": ("mix_grid", "cosine_grid", "int8_max_ndcg_drop", "int8_min_spearman"),
    "labels": ("label_k", "pseudo_queries", "pseudo_k", "unlabeled_queries", "unlabeled_k"),
    "query_encoder": ("query_encoder", "query_encoder_epochs"),
    "graph": ("confident_edge", "graph_file"),
    "faiss": ("all_products",),
    "berm": ("student_epochs", "per_path", "use_cosine", "listwise_weight", "listwise_temperature", "word_init",
             "linear_start", "select_epoch"),
}
# Change no artifact (a measurement, or whether an optional stage runs), so no stage digest.
MEASUREMENT_ONLY = ("speed_queries", "k_order_ablation", "embed_batch_size")

PROFILES: dict[str, Profile] = {
    # Minutes on 2 cores: the demo and CI.
    # A small shop's teacher gets a few hundred steps: 3 epochs, and its new head at a higher rate
    # (quick's dev, 100 queries: cross-encoder alone NDCG@10 0.145 at 1 epoch, 0.164 with head_lr,
    # 0.287 with both; the deployed mix 0.405 -> 0.435 with the bi-encoder cosine in it).
    # Quick's teacher: 1,200 train queries once each rather than 300 three times (about the same
    # steps): dev cross-encoder alone 0.278 -> 0.332, clear-pair accuracy 0.610 -> 0.631, its dev mix
    # weight 0.1 -> 0.2 (BM25 0.4, cosine 0.4; best mix 0.4319 -> 0.4354).
    "quick": Profile("quick", TeacherTrainConfig(max_queries=1200, checkpoint_every=50, epochs=1, head_lr=1e-3),
                     train_queries=300, dev_queries=100, test_queries=200, student_epochs=5,
                     all_products=False, speed_queries=10, pseudo_queries=600, unlabeled_queries=1000),
    # A new shop with a few hundred labeled queries (another sample of train queries than quick's),
    # judged on a larger sample of the usual test split than quick's.
    "small-shop": Profile("small-shop", TeacherTrainConfig(max_queries=200, checkpoint_every=50, epochs=3, head_lr=1e-3),
                          train_queries=200, dev_queries=100, test_queries=400, student_epochs=6,
                          all_products=False, speed_queries=10, pseudo_queries=400, unlabeled_queries=1000, seed=29),
    # The headline numbers, sized to about an hour on 2 cores: the teacher learns from 2,400 graded
    # train queries once (quick's 1,200 x 1 beat 300 x 3 on dev; all 9,408 would take it alone past
    # an hour), the students distil from the teacher's scores of those queries' BM25 top 60 and of
    # the top 30 of 2,000 train queries nobody graded for them; judged on the whole test split.
    "full": Profile("full", TeacherTrainConfig(max_queries=2400, checkpoint_every=100, epochs=1, head_lr=1e-3),
                    train_queries=2400, dev_queries=400, test_queries=None, label_k=60, unlabeled_queries=2000,
                    student_epochs=4, query_encoder_epochs=4),
}


STAGES = ("bm25", "teacher", "teacher_mix", "labels", "query_encoder", "graph", "faiss", "berm", "berm_no_k_order",
          "berm_o", "dev_check", "evaluate")


def _parse(kind: str, key: str, raw: str) -> object:
    """One KEY=VALUE setting parsed as its dataclass field's type (`kind`, the annotation's text)."""
    try:
        if "bool" in kind:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return raw.lower() in ("true", "1")
        if "tuple" in kind:
            return tuple(float(x) for x in raw.split(","))
        if raw.lower() == "none" and "None" in kind:
            return None
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
        return raw
    except ValueError:
        raise PipelineError(f"setting {key}={raw!r}: expected {kind}") from None


def with_overrides(profile: Profile, overrides: dict[str, str]) -> Profile:
    """The profile with KEY=VALUE settings replaced, each parsed as its field's type; `teacher.KEY`
    sets a field of the teacher's training config (e.g. `teacher.epochs=3`)."""
    kinds = {f.name: str(f.type) for f in dataclasses.fields(Profile) if f.name not in ("name", "teacher")}
    teacher_kinds = {f"teacher.{f.name}": str(f.type) for f in dataclasses.fields(TeacherTrainConfig)}
    values, teacher_values = {}, {}
    for key, raw in overrides.items():
        if key in kinds:
            values[key] = _parse(kinds[key], key, raw)
        elif key in teacher_kinds:
            teacher_values[key.removeprefix("teacher.")] = _parse(teacher_kinds[key], key, raw)
        else:
            raise PipelineError(f"unknown pipeline setting {key!r}; settings: {', '.join(sorted(kinds))}, "
                                f"and the teacher's: {', '.join(sorted(teacher_kinds))}")
    if teacher_values:
        values["teacher"] = dataclasses.replace(profile.teacher, **teacher_values)
    return dataclasses.replace(profile, **values)


def run_name(profile: Profile, overrides: dict[str, str]) -> str:
    """The run's folder name: the profile's, plus its overrides (`quick+use_cosine=False`); a
    teacher to start from is named by its run folder (`small-shop+teacher_from=home-depot-quick`),
    a graph file by its name without the suffix (`small-shop+graph_file=logs-pbm-s1000-seed0`)."""
    short = {"teacher_from": lambda v: Path(v).parent.name, "graph_file": lambda v: Path(v).stem}
    shown = {k: short[k](v) if k in short and v.lower() != "none" else v for k, v in overrides.items()}
    return "+".join([profile.name, *(f"{k}={v}" for k, v in sorted(shown.items()))])
