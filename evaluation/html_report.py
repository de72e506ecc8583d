"""The evaluation report: one self-contained HTML file from a pipeline run's `eval.json` and manifests.

    path = build_report(Path("artifacts/pipeline/home-depot-quick"))   # -> .../report.html

Sections, each with one chart (inline SVG, no scripts, no network):
- quality: NDCG@10 and MRR@10 per ranker, both settings, 95% bootstrap intervals over queries
  (seeded) and the paired t-test verdicts against BM25 and the teacher (from `eval.json`);
- per-query: each ranker's NDCG@10 change against BM25 per query: win / tie / loss and the spread;
- cost: NDCG@10 against ms per 100 candidates, first-seen and repeated query;
- identity: catalog, split id, profile, model versions, stage wall times.
Every figure also sits in a table cell with its exact value in `data-value`, so tests read it back.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from common.artifacts import RunLayout, model_manifest
from common.errors import ShopsearchError
from evaluation import charts
from evaluation.charts import Interval
from evaluation.comparison import bootstrap_ci, differences, verdict, win_tie_loss

SETTINGS = ("end_to_end", "rerank_judged")
METRICS = ("ndcg@10", "mrr@10")
TEST_LABELS = {("end_to_end", "ndcg@10"): "e2e ndcg@10", ("end_to_end", "mrr@10"): "e2e mrr@10",
               ("rerank_judged", "ndcg@10"): "judged ndcg@10"}  # what the pipeline's paired tests cover
BASELINE = "BM25 (Elasticsearch)"
SERVED = "BERM-O (ONNX)"
MODEL_FOLDERS = ("teacher", "berm", "berm_no_k_order", "serving")
BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 2000


class ReportError(ShopsearchError, ValueError):
    """A run the report cannot be built from; the message is one line."""


class RunNotFound(ReportError):
    """No pipeline run with an `eval.json` where one was looked for."""


# -- finding and reading a run ---------------------------------------------------------------------

def pipeline_runs(pipeline_dir: Path) -> list[Path]:
    """Run folders holding an `eval.json`, newest evaluation first."""
    pipeline_dir = Path(pipeline_dir)
    found = [p.parent for p in pipeline_dir.glob("*/eval.json")] if pipeline_dir.is_dir() else []
    return sorted(found, key=lambda run: (run / "eval.json").stat().st_mtime, reverse=True)


def resolve_run(run: str | Path | None, pipeline_dir: Path) -> Path:
    """The run folder: the newest under `pipeline_dir` when `run` is None, else a folder path or a
    run name such as `home-depot-quick`."""
    if run is None:
        runs = pipeline_runs(pipeline_dir)
        if not runs:
            raise RunNotFound(f"no evaluated pipeline run under {pipeline_dir}; "
                              "run `shopsearch pipeline --profile quick` first")
        return runs[0]
    for candidate in (Path(run), Path(pipeline_dir) / str(run)):
        if (candidate / "eval.json").is_file():
            return candidate
    raise RunNotFound(f"no eval.json in {run} (nor in {Path(pipeline_dir) / str(run)}); "
                      "the pipeline's evaluate stage writes it")


def load_eval(run_dir: Path) -> dict:
    path = RunLayout(Path(run_dir)).eval
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunNotFound(f"no eval.json in {run_dir}") from None
    except json.JSONDecodeError as err:
        raise ReportError(f"{path} is not valid JSON ({err.msg}, line {err.lineno})") from None
    if "per_query" not in data:
        raise ReportError(f"{path} has no per-query values (written by an older pipeline); remove the "
                          "'evaluate' entry from stages.json beside it and re-run the pipeline")
    if BASELINE not in {row["name"] for row in data.get("rows", [])}:
        raise ReportError(f"{path} has no {BASELINE} row to compare against")
    return data


def teacher_name(data: dict) -> str | None:
    return next((row["name"] for row in data["rows"] if row["name"].startswith("teacher")), None)


def served_name(data: dict) -> str:
    """The ranker the page serves (BERM-O), else the last row."""
    names = [row["name"] for row in data["rows"]]
    return SERVED if SERVED in names else names[-1]


# -- the figures -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class QueryChange:
    query_id: str
    text: str
    baseline: float
    model: float

    @property
    def change(self) -> float:
        return self.model - self.baseline


def query_changes(data: dict, ranker: str | None = None, setting: str = "end_to_end",
                  metric: str = "ndcg@10") -> list[QueryChange]:
    """Each evaluable test query with BM25's and the ranker's value, largest gain first (ties by id)."""
    ranker = ranker or served_name(data)
    per_query = data["per_query"][setting]
    if ranker not in per_query:
        raise ReportError(f"no ranker named {ranker!r} in this run; rankers: {', '.join(per_query)}")
    model, base = per_query[ranker][metric], per_query[BASELINE][metric]
    diffs = differences(model, base)
    texts = data["per_query"].get("queries", {})
    rows = [QueryChange(q, texts.get(q, q), base[q], model[q]) for q in diffs]
    return sorted(rows, key=lambda r: (-r.change, r.query_id))


def intervals(data: dict) -> dict[str, dict[str, dict[str, Interval]]]:
    """setting -> ranker -> metric -> mean (the JSON's row figure) and 95% bootstrap interval."""
    out: dict = {}
    for setting in SETTINGS:
        out[setting] = {}
        for row in data["rows"]:
            values = data["per_query"][setting][row["name"]]
            out[setting][row["name"]] = {
                m: Interval(row[setting][m], *bootstrap_ci(list(values[m].values()), BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED))
                for m in METRICS}
    return out


# -- HTML ------------------------------------------------------------------------------------------

def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cell(value: float, digits: int = 4, **data: object) -> str:
    attrs = "".join(f' data-{k.replace("_", "-")}="{_e(v)}"' for k, v in data.items())
    return f'<td class="num"{attrs} data-value="{value!r}">{value:.{digits}f}</td>'


def _table(head: list[str], rows: list[str]) -> str:
    return ("<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _section(section_id: str, title: str, intro: str, chart: str, tables: str) -> str:
    return (f'<section id="{section_id}" class="report-section"><h2>{_e(title)}</h2><p>{intro}</p>'
            f'<figure class="chart">{chart}</figure>{tables}</section>')


def _quality(data: dict, ivs: dict) -> str:
    teacher = teacher_name(data)
    tables = []
    for setting in SETTINGS:
        rows = []
        for name, values in ivs[setting].items():
            cells = "".join(
                _cell(iv.mean, ranker=name, setting=setting, metric=m)
                + f'<td class="ci" data-ranker="{_e(name)}" data-setting="{setting}" data-metric="{m}" '
                  f'data-low="{iv.low!r}" data-high="{iv.high!r}">[{iv.low:.3f}, {iv.high:.3f}]</td>'
                for m, iv in values.items())
            rows.append(f"<tr><th>{_e(name)}</th>{cells}</tr>")
        tables.append(f"<h3>{_e(charts.SETTING_NAMES[setting])}</h3>"
                      + _table(["ranker", "NDCG@10", "95% CI", "MRR@10", "95% CI"], rows))
    # paired t-tests from eval.json (ranx compare, per query), in words
    baselines = [b for b in (BASELINE, teacher) if b]
    p_values = data.get("significance_p_values", {})
    means = {(row["name"], s, m): row[s][m] for row in data["rows"] for s in SETTINGS for m in METRICS}
    head = ["ranker"] + [f"{label} vs {b.split(' ')[0]}" for label in TEST_LABELS.values() for b in baselines]
    rows = []
    for row in data["rows"]:
        name, cells = row["name"], []
        for (setting, metric), label in TEST_LABELS.items():
            for b in baselines:
                if b == name:
                    cells.append("<td>-</td>")
                    continue
                p = p_values.get(name, {}).get(f"vs {b}", {}).get(label)
                diff = means[(name, setting, metric)] - means[(b, setting, metric)]
                words = verdict(p, diff)
                cls = words.split(" ")[0]
                cells.append(f'<td class="verdict {cls}" data-ranker="{_e(name)}" data-versus="{_e(b)}" '
                             f'data-test="{label}" data-p="{"" if p is None else repr(p)}">{_e(words)}</td>')
        rows.append(f"<tr><th>{_e(name)}</th>{''.join(cells)}</tr>")
    tables.append("<h3>Paired t-tests per query (ranx compare), p &lt; 0.05</h3>" + _table(head, rows))
    intro = (f"{data['evaluable_queries']} test queries with a positive grade "
             f"({data.get('excluded_queries_without_positive_gain', 0)} without one left out). Bars: the mean; "
             f"whiskers: 95% percentile bootstrap over queries ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}). "
             "NDCG@10 is linear gain (ranx ndcg), unjudged items gain 0; MRR@10 counts gain &gt;= 1 as relevant. "
             f"Perfect reordering of BM25's top-{data.get('depth', 100)} reaches end-to-end NDCG@10 "
             f"{data.get('end_to_end_ceiling_ndcg@10', float('nan')):.4f}.")
    return _section("quality", "Which ranker ranks best", intro, charts.quality_chart(ivs), "".join(tables))


def _per_query(data: dict) -> str:
    others = [row["name"] for row in data["rows"] if row["name"] != BASELINE]
    deltas, counts, rows = {}, {}, []
    for name in others:
        for setting in SETTINGS:
            model = data["per_query"][setting][name]["ndcg@10"]
            base = data["per_query"][setting][BASELINE]["ndcg@10"]
            wtl = win_tie_loss(model, base)
            diffs = list(differences(model, base).values())
            if setting == "end_to_end":
                deltas[name], counts[name] = diffs, (wtl.wins, wtl.ties, wtl.losses)
            rows.append(f'<tr data-ranker="{_e(name)}" data-setting="{setting}" data-wins="{wtl.wins}" '
                        f'data-ties="{wtl.ties}" data-losses="{wtl.losses}"><th>{_e(name)}</th>'
                        f"<td>{_e(charts.SETTING_NAMES[setting])}</td><td class=num>{wtl.wins}</td>"
                        f"<td class=num>{wtl.ties}</td><td class=num>{wtl.losses}</td>"
                        + _cell(sum(diffs) / len(diffs), ranker=name, setting=setting, metric="mean change")
                        + "</tr>")
    intro = ("Each dot is one test query: the ranker's NDCG@10 minus BM25's on it (end to end). "
             "A tie is the same value. The box holds the middle half of the queries, the diamond is the mean. "
             'Read the losses query by query on <a href="/compare?only=losses">/compare</a> (served with the page).')
    table = _table(["ranker", "setting", "wins", "ties", "losses", "mean NDCG@10 change"], rows)
    return _section("per-query", "Where it wins and loses against BM25", intro,
                    charts.difference_chart(deltas, counts, BASELINE), table)


def _cost(data: dict) -> str:
    speed = data.get("speed", {})
    rows_by_name = {row["name"]: row for row in data["rows"]}
    points, rows = {}, []
    for name, row in rows_by_name.items():
        s = speed.get(name, {"ms_per_100_first": row["ms_per_100"], "ms_per_100_repeat": row["ms_per_100"]})
        first, repeat = s["ms_per_100_first"], s["ms_per_100_repeat"]
        points[name] = (row["end_to_end"]["ndcg@10"], first, repeat)
        rows.append(f"<tr><th>{_e(name)}</th>" + _cell(row["end_to_end"]["ndcg@10"], ranker=name, metric="ndcg@10")
                    + _cell(first, 3, ranker=name, metric="ms_per_100_first")
                    + _cell(repeat, 3, ranker=name, metric="ms_per_100_repeat") + "</tr>")
    intro = ("Scoring time of 100 BM25 candidates, measured in the same run on the same machine: a test query "
             "seen for the first time, and the same query again (the served model caches a query's embedding). "
             "The dashed line is BM25's NDCG@10.")
    table = _table(["ranker", "end-to-end NDCG@10", "ms / 100, first-seen", "ms / 100, repeated"], rows)
    return _section("cost", "Quality against cost", intro, charts.cost_chart(points, BASELINE), table)


def _identity(data: dict, run_dir: Path) -> str:
    stages_path = RunLayout(run_dir).stages
    stages = ({k: v["seconds"] for k, v in json.loads(stages_path.read_text()).items()} if stages_path.exists()
              else dict(data.get("stage_seconds", {})))
    split = data.get("split", {})
    facts = [("catalog", data.get("dataset")), ("data fingerprint", data.get("data_fingerprint")),
             ("split id", split.get("split_id")), ("queries", f"{split.get('side', 'test')} side, "
                                                              f"{data.get('evaluable_queries')} evaluated"),
             ("profile", data.get("profile")), ("run folder", run_dir.name)]
    for folder in MODEL_FOLDERS:
        m = model_manifest(run_dir / folder)
        if m:
            version = m.get("model_version") or m.get("model") or "-"
            extra = f", artifact {m['artifact_id']}" if "artifact_id" in m else ""
            facts.append((f"model: {folder}", f"{version}{extra}"))
    rows = [f'<tr data-fact="{_e(k)}"><th>{_e(k)}</th><td>{_e(v if v is not None else "-")}</td></tr>' for k, v in facts]
    rows += [f'<tr data-stage="{_e(k)}"><th>stage {_e(k)}</th>' + _cell(float(v), 1, stage=k) + "</tr>"
             for k, v in stages.items()]
    chart = charts.stage_chart(stages) if stages else charts.stage_chart({"(no stages recorded)": 0.0})
    return _section("identity", "What was run", "The run these figures come from, and how long each stage took.",
                    chart, _table(["", ""], rows))


def _headline(data: dict) -> str:
    rows = {row["name"]: row for row in data["rows"]}
    best = max(rows, key=lambda n: rows[n]["end_to_end"]["ndcg@10"])
    base = rows[BASELINE]["end_to_end"]["ndcg@10"]
    served = served_name(data)
    p = data.get("significance_p_values", {}).get(served, {}).get(f"vs {BASELINE}", {}).get("e2e ndcg@10")
    change = rows[served]["end_to_end"]["ndcg@10"] - base
    speed = data.get("speed", {}).get(served, {})
    cost = (f" It scores 100 candidates in {speed['ms_per_100_first']:.2f} ms for a new query "
            f"({speed['teacher_over_model_first']:.0f}x faster than the teacher)." if speed else "")
    return (f'<p class="headline">Best end-to-end NDCG@10: <b>{_e(best)}</b> '
            f'({rows[best]["end_to_end"]["ndcg@10"]:.4f}; BM25 {base:.4f}). The served model, {_e(served)}, '
            f'changes it by {change:+.4f}: {_e(verdict(p, change))} against BM25.{_e(cost)}</p>')


STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1a202c;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:36px;border-bottom:1px solid #cbd5e0}h3{font-size:14px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{padding:3px 8px;border-bottom:1px solid #e2e8f0;
text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}.headline{font-size:15px;
background:#f7fafc;padding:10px;border-left:4px solid #2b6cb0}.better{color:#2f855a}.worse{color:#c53030}
figure.chart{margin:8px 0}figure.chart svg{max-width:100%;height:auto}
"""


def render_report(data: dict, run_dir: Path) -> str:
    run_dir = Path(run_dir)
    ivs = intervals(data)
    title = f"shopsearch evaluation: {data.get('dataset')} {data.get('profile', '')}, split {data.get('split', {}).get('split_id')}"
    body = _headline(data) + _quality(data, ivs) + _per_query(data) + _cost(data) + _identity(data, run_dir)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>')


def build_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report of the run in `run_dir` (default: `run_dir/report.html`) and return its path."""
    run_dir = Path(run_dir)
    data = load_eval(run_dir)
    out = Path(out) if out is not None else run_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(render_report(data, run_dir))
    tmp.replace(out)  # a page serving the old report never reads half a file
    return out


def current_report(run_dir: Path) -> Path:
    """`run_dir/report.html`, built first when missing or older than the run's eval.json."""
    path = Path(run_dir) / "report.html"
    if not path.exists() or path.stat().st_mtime < RunLayout(Path(run_dir)).eval.stat().st_mtime:
        build_report(run_dir, path)
    return path
