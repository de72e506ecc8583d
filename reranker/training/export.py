"""The ONNX exports of a serving artifact: BERM-O's online half and its two context graphs, and the
bi-encoder with its pooling. Serving runs them with reranker/serving/onnx_runner.py, whose input
and output names are the contract these exports write. Also the teacher cross-encoder, in float32
and dynamic int8, for offline scoring (reranker/models/teacher_onnx.py runs it and names its files).

All use the TorchScript exporter (`dynamo=False`), opset 17, with the batch and lengths dynamic:
the torch.export-based exporter needs `onnxscript`, which the project does not depend on.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from reranker.models import teacher_onnx
from reranker.models.berm_o import BermO, BermOConfig
from reranker.models.teacher import Teacher
from reranker.serving import text_encoder
from reranker.serving.onnx_runner import (CONTEXT_INPUTS, CONTEXT_OUTPUTS, PAIR_INPUTS, PAIR_OUTPUTS, QUERY_INPUTS,
                                          QUERY_ROWS)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# BERM-O


class _OnlineGraph(nn.Module):
    """forward_online as a module's forward, for the exporter."""

    def __init__(self, model: BermO) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.forward_online(*inputs)


def example_online_inputs(config: BermOConfig, n: int = 2, lq: int = 3, li: int = 5) -> tuple[torch.Tensor, ...]:
    """Random inputs for forward_online, in PAIR_INPUTS order."""
    g = torch.Generator().manual_seed(0)
    d = config.vec_dim
    return (torch.randint(2, config.vocab_size, (n, lq), generator=g),
            torch.randint(2, config.vocab_size, (n, li), generator=g),
            torch.randn(n, d, generator=g), torch.randn(n, d, generator=g),
            torch.randn(n, 2, d, generator=g), torch.rand(n, 2, generator=g), torch.ones(n, 2),
            torch.randn(n, 2, d, generator=g), torch.rand(n, 2, generator=g), torch.ones(n, 2),
            torch.rand(n, generator=g), torch.randn(n, d, generator=g))


def export_onnx(model: BermO, path: Path) -> Path:
    """Write forward_online to `path` (opset 17; N, the query side's rows, Lq and Li dynamic). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_online_inputs(model.config)
    names = list(PAIR_INPUTS)
    if not model.config.use_tuned_query:  # a graph without the tuned query encoder has no t_vec input
        inputs, names = inputs[:-1], names[:-1]
    dynamic = {name: {0: "n"} for name in (*names, *PAIR_OUTPUTS)}
    # The query side has its own row count: serving sends the query once ("nq" = 1) and the graph
    # broadcasts it over the N candidates (no [N, D] copies); a row per pair works too.
    dynamic.update({name: {0: QUERY_ROWS} for name in QUERY_INPUTS if name in names})
    dynamic["q_tokens"] = {0: QUERY_ROWS, 1: "lq"}
    dynamic["i_tokens"] = {0: "n", 1: "li"}
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated
            torch.onnx.export(_OnlineGraph(model), inputs, str(path), dynamo=False,
                              opset_version=17, input_names=names, output_names=list(PAIR_OUTPUTS),
                              dynamic_axes=dynamic)
    finally:
        model.train(was_training)
    log.info("exported BERM-O online graph to %s", path)
    return path


class _ContextGraph(nn.Module):
    """One side's offline half (`precompute_contexts`) as a module, for the exporter."""

    def __init__(self, model: BermO, side: str) -> None:
        super().__init__()
        self.model, self.side = model, side

    def forward(self, node_vec: torch.Tensor, nb_vec: torch.Tensor, nb_w: torch.Tensor,
                nb_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # the mask travels as float32 so the graph takes only float inputs
        return self.model._contexts(node_vec, nb_vec, nb_w, nb_mask > 0.5, self.side)


def export_context_onnx(model: BermO, path: Path, side: str) -> Path:
    """Write one side's context computation (node vectors + neighbors -> ctx, ctx_w, has, attention).

    Serving runs it for what was not precomputed: an ad-hoc query, an item sent with its text.
    """
    if not model.config.use_k_order:
        raise ValueError("a BERM-O without k-order layers has no context graph")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    d, k = model.config.vec_dim, 3
    g = torch.Generator().manual_seed(0)
    example = (torch.randn(2, d, generator=g), torch.randn(2, 2, k, d, generator=g), torch.rand(2, 2, k, generator=g),
               torch.ones(2, 2, k))
    dynamic = {"node_vec": {0: "m"}, "nb_vec": {0: "m", 2: "k"}, "nb_w": {0: "m", 2: "k"}, "nb_mask": {0: "m", 2: "k"},
               "ctx": {0: "m"}, "ctx_w": {0: "m"}, "has": {0: "m"}, "attention": {0: "m", 2: "k"}}
    model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(_ContextGraph(model, side), example, str(path), dynamo=False, opset_version=17,
                          input_names=list(CONTEXT_INPUTS), output_names=list(CONTEXT_OUTPUTS), dynamic_axes=dynamic)
    return path


# ----------------------------------------------------------------------------------------------
# the bi-encoder (all-MiniLM-L6-v2), for new queries and items at serving time


class MeanPooled(nn.Module):
    """The transformer, then mean pooling over real tokens and L2 normalisation (as the bi-encoder)."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(mean, dim=-1)


def export_text_encoder(bi_encoder, folder: Path) -> Path:
    """Write the sentence-transformers bi-encoder's ONNX graph, tokenizer and settings into `folder`
    (the files reranker/serving/text_encoder.py reads)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    transformer = bi_encoder[0].auto_model.eval()
    tokenizer = bi_encoder.tokenizer
    example = tokenizer(["cordless drill"], return_tensors="pt")
    inputs = text_encoder.INPUTS
    dynamic = {name: {0: "n", 1: "length"} for name in inputs} | {text_encoder.OUTPUT: {0: "n"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(MeanPooled(transformer), tuple(example[name] for name in inputs),
                          str(folder / text_encoder.MODEL_FILE), dynamo=False, opset_version=17,
                          input_names=list(inputs), output_names=[text_encoder.OUTPUT], dynamic_axes=dynamic)
    tokenizer.backend_tokenizer.save(str(folder / text_encoder.TOKENIZER_FILE))
    settings = {"max_tokens": int(bi_encoder.max_seq_length), "dim": int(transformer.config.hidden_size)}
    (folder / text_encoder.SETTINGS_FILE).write_text(json.dumps(settings))
    return folder


# ----------------------------------------------------------------------------------------------
# the teacher cross-encoder, for offline scoring (labels, teacher_mix, the evaluation's teacher row)


class _Logits(nn.Module):
    """The sequence classifier's one logit per pair, as a flat [n] output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).logits.squeeze(-1)


def _not_a_preprocess_hint(record: logging.LogRecord) -> bool:
    return "pre-processing before quantization" not in record.getMessage()


# the classifier's head, the pooler and the one-logit layer, kept in float32 by name: the
# quantiser first splits each Gemm into <name>_MatMul and <name>_Add, and quantises the MatMul
HEAD_NODES = ("/model/bert/pooler/dense/Gemm_MatMul", "/model/classifier/Gemm_MatMul")
# the projections int8 covers: MatMuls (attention output, feed-forward) and fused Attention (Q, K, V)
INT8_OPS = ("MatMul", "Attention")


def quantize_int8(source: Path, target: Path, exclude: tuple[str, ...] = HEAD_NODES) -> Path:
    """A dynamic int8 copy of an ONNX graph (onnxruntime's own `quantize_dynamic`).

    Per-channel weight scales; the MatMuls and the fused Attention nodes' input projections are
    quantised (where the time goes). The embedding lookups stay float32 (int8 there saves no work,
    only precision), and so do the nodes in `exclude` (the head: one small matrix, and quantised
    it shifts every logit alike for no speed). The fused graph's contrib ops defeat the
    quantiser's shape inference, hence the default float type."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    root.addFilter(_not_a_preprocess_hint)  # ONNX Runtime's advice on the root logger, each call
    try:
        quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(INT8_OPS), nodes_to_exclude=list(exclude),
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.removeFilter(_not_a_preprocess_hint)
    return Path(target)



def fuse_bert(source: Path, target: Path, config) -> dict[str, int]:
    """`source` with ONNX Runtime's BERT fusions (onnxruntime.transformers.optimizer, part of
    onnxruntime) saved as `target`: one Attention node per layer, embeddings plus LayerNorm,
    Add plus LayerNorm, bias plus GELU. Unfused, the graph runs ~50 small ops per layer, and
    ONNX Runtime's own session-time fusions do not recognise the exporter's attention. opt_level 0:
    only these portable fusions are saved, the session does the rest on the machine it runs on.
    Returns the fused operators' counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(source), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size, opt_level=0)
    model.save_model_to_file(str(target))
    return {name: count for name, count in model.get_fused_operator_statistics().items() if count}


def export_teacher(teacher: Teacher, folder: Path) -> dict[str, Path]:
    """Write the teacher's cross-encoder as float32 and int8 ONNX graphs into `folder` (batch and
    length dynamic), removing an earlier guard's choice; returns their paths by precision ("fp32", "int8").

    The model is traced with eager attention: the SDPA path exports as a masked-softmax pattern
    (IsNaN, Where) that the BERT fusions do not match, and then every layer runs unfused. The
    float32 graph is the fused one (`fuse_bert`), and the int8 graph its quantised copy."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {precision: folder / name for precision, name in teacher_onnx.GRAPHS.items()}
    traced = folder / "teacher.traced.onnx"
    example = teacher.tokenizer(["cordless drill"], ["20V max cordless drill kit"], return_tensors="pt")
    inputs = teacher_onnx.INPUTS
    dynamic = {name: {0: "n", 1: "length"} for name in inputs} | {teacher_onnx.OUTPUT: {0: "n"}}
    was_training, attention = teacher.model.training, teacher.model.config._attn_implementation
    teacher.model.eval()
    teacher.model.config._attn_implementation = "eager"
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(_Logits(teacher.model), tuple(example[name] for name in inputs), str(traced),
                              dynamo=False, opset_version=17, input_names=list(inputs),
                              output_names=[teacher_onnx.OUTPUT], dynamic_axes=dynamic)
    finally:
        teacher.model.train(was_training)
        teacher.model.config._attn_implementation = attention
    try:
        fused = fuse_bert(traced, paths["fp32"], teacher.model.config)
    finally:
        traced.unlink(missing_ok=True)
    quantize_int8(paths["fp32"], paths["int8"])
    # new graphs, no choice between them yet: the guard (reranker/training/int8_guard.py) writes it
    (folder / teacher_onnx.CHOICE_FILE).unlink(missing_ok=True)
    log.info("exported the teacher to %s (fused: %s) and %s", paths["fp32"], fused, paths["int8"])
    return paths
