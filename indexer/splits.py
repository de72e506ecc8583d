"""Train / dev / test split of queries: by query, seeded, deterministic from the data and the seed.

Each query's side comes from a hash of (seed, query id), so it depends on nothing else: adding
queries to a catalog never moves the old ones between sides.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from common.errors import ShopsearchError
from indexer.records import Catalog


class SplitError(ShopsearchError):
    pass


@dataclass(frozen=True)
class QuerySplit:
    split_id: str
    dataset: str
    data_fingerprint: str
    seed: int
    dev_fraction: float
    test_fraction: float
    train: list[str]
    dev: list[str]
    test: list[str]

    def side(self, name: str) -> list[str]:
        if name not in ("train", "dev", "test"):
            raise SplitError(f"unknown split side {name!r}; choose train, dev or test")
        return getattr(self, name)


def _unit_interval(seed: int, query_id: str) -> float:
    digest = hashlib.sha256(f"{seed}\x00{query_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_queries(catalog: Catalog, seed: int, dev_fraction: float, test_fraction: float) -> QuerySplit:
    if dev_fraction < 0 or test_fraction <= 0 or dev_fraction + test_fraction >= 1:
        raise SplitError(f"fractions dev={dev_fraction} test={test_fraction} leave no room for train")
    sides: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for query_id in sorted(catalog.queries):
        u = _unit_interval(seed, query_id)
        side = "test" if u < test_fraction else "dev" if u < test_fraction + dev_fraction else "train"
        sides[side].append(query_id)
    fingerprint = catalog.fingerprint()
    split_id = hashlib.sha256(
        json.dumps([seed, dev_fraction, test_fraction, fingerprint, sides], sort_keys=True).encode()
    ).hexdigest()[:12]
    return QuerySplit(split_id, catalog.name, fingerprint, seed, dev_fraction, test_fraction, **sides)


def split_path(artifacts_dir: Path, dataset: str) -> Path:
    """Where the current split of a dataset lives (later artifacts record its split_id)."""
    return artifacts_dir / "splits" / f"{dataset}.json"


def save_split(split: QuerySplit, artifacts_dir: Path) -> Path:
    path = split_path(artifacts_dir, split.dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(split), indent=1))
    return path


def load_split(path: Path) -> QuerySplit:
    try:
        return QuerySplit(**json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise SplitError(f"{path}: no split yet; run `shopsearch split` first") from None
    except (ValueError, TypeError) as err:
        raise SplitError(f"{path}: not a split file ({err})") from None
    except OSError as err:
        raise SplitError(f"{path}: cannot read the split ({err.strerror or err})") from None
