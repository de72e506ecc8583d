"""The records every catalog reader yields, whatever the source format."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from common.errors import ShopsearchError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    title: str
    brand: str | None = None
    category: str | None = None
    description: str | None = None

    def to_document(self) -> dict:
        """The Elasticsearch source document (empty optional fields left out)."""
        doc = {"product_id": self.product_id, "title": self.title}
        for name in ("brand", "category", "description"):
            value = getattr(self, name)
            if value:
                doc[name] = value
        return doc


@dataclass(frozen=True, slots=True)
class Query:
    query_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Judgment:
    """A human grade for a (query, product) pair; `gain` is >= 0, higher is more relevant."""

    query_id: str
    product_id: str
    gain: float


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One search-log line: how often a product was shown for a query and clicked."""

    query_id: str
    product_id: str
    clicks: int
    impressions: int


class CatalogError(ShopsearchError):
    """A catalog that cannot be read at all (missing file, wrong layout, wrong encoding)."""


class MalformedRowError(CatalogError):
    """A bad row, raised instead of skipped when the run is strict."""


@dataclass(frozen=True, slots=True)
class BadRow:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class RowErrors:
    """Collects malformed rows; a strict run stops at the first one instead."""

    strict: bool = False
    rows: list[BadRow] = field(default_factory=list)

    def report(self, file: object, line: int, reason: str) -> None:
        bad = BadRow(str(file), line, reason)
        if self.strict:
            raise MalformedRowError(f"malformed row at {bad}")
        # The first few are shown as they come; the total is reported at the end of the run.
        if len(self.rows) < 10:
            log.warning("skipping malformed row at %s", bad)
        self.rows.append(bad)


@dataclass
class Catalog:
    """A whole dataset in memory: products, queries, human labels and optional search logs."""

    name: str
    products: dict[str, Product] = field(default_factory=dict)
    queries: dict[str, Query] = field(default_factory=dict)
    judgments: list[Judgment] = field(default_factory=list)
    logs: list[LogEvent] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)

    def fingerprint(self) -> str:
        """A digest of the content, so artifacts can say which data they were built from."""
        digest = hashlib.sha256()
        for product in sorted(self.products.values(), key=lambda p: p.product_id):
            digest.update(repr(product).encode())
        for query in sorted(self.queries.values(), key=lambda q: q.query_id):
            digest.update(repr(query).encode())
        for item in sorted(self.judgments, key=lambda j: (j.query_id, j.product_id)):
            digest.update(repr(item).encode())
        for event in sorted(self.logs, key=lambda e: (e.query_id, e.product_id)):
            digest.update(repr(event).encode())
        return digest.hexdigest()[:16]

    def judgments_by_query(self) -> dict[str, dict[str, float]]:
        grades: dict[str, dict[str, float]] = {}
        for item in self.judgments:
            grades.setdefault(item.query_id, {})[item.product_id] = item.gain
        return grades
