"""Reader for WANDS, the Wayfair ANnotation DataSet (MIT License, Copyright (c) 2021 ecir2022).

Three tab-separated UTF-8 files: product.csv, query.csv, label.csv; labels Exact / Partial /
Irrelevant become gains 2 / 1 / 0. `download` fetches them once into a local cache folder.
"""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path

from tqdm import tqdm

from indexer.readers.tabular import iter_rows
from indexer.records import Catalog, CatalogError, Judgment, Product, Query, RowErrors

log = logging.getLogger(__name__)

FILES = ("product.csv", "query.csv", "label.csv")
DOWNLOAD_URL = "https://raw.githubusercontent.com/wayfair/WANDS/main/dataset/{name}"
GAINS = {"Exact": 2.0, "Partial": 1.0, "Irrelevant": 0.0}


def download(folder: Path) -> Path:
    """Fetch the three files into `folder` unless they are there already."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        target = folder / name
        if target.exists():
            continue
        partial = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(DOWNLOAD_URL.format(name=name), timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with open(partial, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        bar.update(len(chunk))
        except OSError as err:
            partial.unlink(missing_ok=True)
            raise CatalogError(f"could not download WANDS {name} ({err}); put the files in {folder} by hand") from None
        partial.rename(target)
    return folder


def read(path: Path, errors: RowErrors) -> Catalog:
    folder = Path(path)
    if not folder.is_dir():
        raise CatalogError(f"{folder}: expected the WANDS folder with {', '.join(FILES)}")
    catalog = Catalog(name="wands")
    product_file = folder / "product.csv"
    # The category column is `category hierarchy` upstream, `category_hierarchy` in its README.
    for line, row in iter_rows(product_file, ("product_id", "product_name"), errors, delimiter="\t"):
        product_id, title = row["product_id"].strip(), " ".join(row["product_name"].split())
        if not product_id or not title:
            errors.report(product_file, line, "empty product_id or product_name")
            continue
        if product_id in catalog.products:
            errors.report(product_file, line, f"duplicate product_id {product_id!r}")
            continue
        category = row.get("category hierarchy", row.get("category_hierarchy", "")).strip()
        catalog.products[product_id] = Product(
            product_id, title,
            category=category or row.get("product_class", "").strip() or None,
            description=row.get("product_description", "").strip() or None,
        )
    query_file = folder / "query.csv"
    for line, row in iter_rows(query_file, ("query_id", "query"), errors, delimiter="\t"):
        query_id, text = row["query_id"].strip(), " ".join(row["query"].split())
        if not query_id or not text:
            errors.report(query_file, line, "empty query_id or query")
            continue
        catalog.queries[query_id] = Query(query_id, text)
    label_file = folder / "label.csv"
    for line, row in iter_rows(label_file, ("query_id", "product_id", "label"), errors, delimiter="\t"):
        query_id, product_id, label = (row[k].strip() for k in ("query_id", "product_id", "label"))
        if label not in GAINS:
            errors.report(label_file, line, f"label {label!r} is not one of {', '.join(GAINS)}")
        elif query_id not in catalog.queries:
            errors.report(label_file, line, f"unknown query_id {query_id!r}")
        elif product_id not in catalog.products:
            errors.report(label_file, line, f"unknown product_id {product_id!r}")
        else:
            catalog.judgments.append(Judgment(query_id, product_id, GAINS[label]))
    catalog.bad_rows = errors.rows
    return catalog
