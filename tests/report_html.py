"""Reading a built report back: its sections, charts and figures, compared with the eval.json it came from."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

from evaluation.comparison import win_tie_loss

SECTIONS = ("quality", "per-query", "cost", "identity")


class ReportParser(HTMLParser):
    """Sections with their number of <svg> charts, and every element's data-* attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.svgs: dict[str, int] = {}
        self.cells: list[dict[str, str]] = []  # data-* attributes plus the element's text
        self._open: list[dict[str, str]] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
            self.svgs[self.section] = 0
        if tag == "svg" and self.section:
            self.svgs[self.section] += 1
        for key in ("src", "href"):
            if (attrs.get(key) or "").startswith(("http:", "https:", "//")):
                self.external.append(attrs[key])
        if tag in ("script", "link", "img", "iframe"):
            self.external.append(tag)
        data = {k[5:]: v for k, v in attrs.items() if k.startswith("data-")}
        if data:
            data["_section"] = self.section or ""
            data["_text"] = ""
            self.cells.append(data)
            self._open.append(data)

    def handle_data(self, text):
        for cell in self._open:
            cell["_text"] += text

    def handle_endtag(self, tag):
        if tag in ("td", "tr") and self._open:
            self._open.pop()
        if tag == "section":
            self.section = None


def parse_report(text: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(text)
    return parser


def find(cells, **wanted) -> dict:
    hits = [c for c in cells if all(c.get(k) == v for k, v in wanted.items())]
    assert len(hits) == 1, (wanted, len(hits))
    return hits[0]


def assert_report_matches(text: str, data: dict) -> None:
    """One chart per section, no network, and every figure equal to the JSON's."""
    report = parse_report(text)
    assert report.svgs == {s: 1 for s in SECTIONS}
    assert report.external == []
    for svg in re.findall(r"<svg.*?</svg>", text, flags=re.S):
        assert len(svg) > 2000 and "<path" in svg  # something was drawn
    assert "linear gain, unjudged = 0" in text
    figures = [c for c in report.cells if "value" in c]
    for row in data["rows"]:
        for setting in ("end_to_end", "rerank_judged"):
            for metric in ("ndcg@10", "mrr@10"):
                cell = find(figures, ranker=row["name"], setting=setting, metric=metric, _section="quality")
                assert float(cell["value"]) == row[setting][metric]
                assert cell["_text"] == f"{row[setting][metric]:.4f}"
                ci = next(c for c in report.cells if c.get("ranker") == row["name"] and c.get("setting") == setting
                          and c.get("metric") == metric and "low" in c)
                assert float(ci["low"]) <= row[setting][metric] + 1e-6 <= float(ci["high"]) + 2e-6
        speed = data["speed"][row["name"]]
        for key in ("ms_per_100_first", "ms_per_100_repeat"):
            assert float(find(report.cells, ranker=row["name"], metric=key)["value"]) == speed[key]
    for name, versus in data["significance_p_values"].items():
        for base, tests in versus.items():
            for label, p in tests.items():
                cells = [c for c in report.cells if c.get("ranker") == name and c.get("versus") == base[3:]
                         and c.get("test") == label]
                for cell in cells:  # the report shows the tests against BM25 and the teacher
                    assert float(cell["p"]) == p or (math.isnan(p) and math.isnan(float(cell["p"])))
                    assert ("better" in cell["_text"] or "worse" in cell["_text"]) == (p < 0.05)
    bm25 = "BM25 (Elasticsearch)"
    for row in data["rows"]:
        if row["name"] == bm25:
            continue
        for setting in ("end_to_end", "rerank_judged"):
            per_query = data["per_query"][setting]
            wtl = win_tie_loss(per_query[row["name"]]["ndcg@10"], per_query[bm25]["ndcg@10"])
            counts = find(report.cells, ranker=row["name"], setting=setting, _section="per-query", wins=str(wtl.wins))
            assert (int(counts["ties"]), int(counts["losses"])) == (wtl.ties, wtl.losses)
    for fact in ("catalog", "split id", "profile"):
        shown = find(report.cells, fact=fact)["_text"]
        key = {"catalog": "dataset", "split id": "split", "profile": "profile"}[fact]
        expected = data[key]["split_id"] if key == "split" else data[key]
        assert expected in shown
