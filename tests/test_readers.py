"""Catalog readers (WANDS, generic, home-depot), their error reporting, and the query split.

No Elasticsearch needed: everything reads small fixtures under tests/fixtures or files written
into tmp_path.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from indexer.readers import READERS, load_catalog
from indexer.records import (
    BadRow,
    Catalog,
    CatalogError,
    Judgment,
    LogEvent,
    MalformedRowError,
    Product,
    Query,
)
from indexer.splits import (
    QuerySplit,
    SplitError,
    load_split,
    save_split,
    split_path,
    split_queries,
)

FIXTURES = Path(__file__).parent / "fixtures"
WANDS = FIXTURES / "wands"
SHOP = FIXTURES / "generic_shop"

HOME_DEPOT_HEADER = '"id","product_uid","product_title","search_term","relevance"\n'


# -- helpers ----------------------------------------------------------------------------------------
def write_csv(path: Path, rows: list[dict], columns: list[str], encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def raw_table(path: Path) -> list[dict]:
    """The rows of a fixture table as plain dicts, straight from the file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return list(csv.DictReader(text.splitlines()))


COLUMNS = {
    "products": ["product_id", "title", "brand", "category", "description"],
    "queries": ["query_id", "query"],
    "labels": ["query_id", "product_id", "grade"],
    "logs": ["query_id", "product_id", "clicks", "impressions"],
}


def shop_tables() -> dict[str, list[dict]]:
    return {
        stem: raw_table(next(p for p in (SHOP / f"{stem}.jsonl", SHOP / f"{stem}.csv") if p.exists()))
        for stem in COLUMNS
    }


def write_shop(folder: Path, tables: dict[str, list[dict]], kinds: dict[str, str]) -> Path:
    """Write a generic-format folder, each table as `.csv` or `.jsonl` as `kinds` says."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, rows in tables.items():
        if kinds[stem] == "csv":
            write_csv(folder / f"{stem}.csv", rows, COLUMNS[stem])
        else:
            write_jsonl(folder / f"{stem}.jsonl", rows)
    return folder


def small_generic(folder: Path, *, products: str | None = None, queries: str | None = None,
                  labels: str | None = None, logs: str | None = None) -> Path:
    """A tiny all-CSV generic catalog; any table can be replaced by raw text."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "products.csv").write_text(
        products if products is not None else
        "product_id,title\nA1,Claw Hammer\nA2,Cordless Drill\nA3,Paint Roller\n", encoding="utf-8")
    (folder / "queries.csv").write_text(
        queries if queries is not None else "query_id,query\nq1,hammer\nq2,drill\n", encoding="utf-8")
    (folder / "labels.csv").write_text(
        labels if labels is not None else
        "query_id,product_id,grade\nq1,A1,2\nq1,A2,0\nq2,A2,2\nq2,A3,0\n", encoding="utf-8")
    if logs is not None:
        (folder / "logs.csv").write_text(logs, encoding="utf-8")
    return folder


def home_depot_file(path: Path, rows: list[str]) -> Path:
    path.write_bytes((HOME_DEPOT_HEADER + "".join(row + "\n" for row in rows)).encode("latin-1"))
    return path


HOME_DEPOT_ROWS = [
    '1,200001,"Everbilt 90° Corner Brace, Zinc","corner brace",3',
    '2,200001,"Everbilt 90° Corner Brace, Zinc","angle bracket",2.33',
    '3,200002,"Glacier Bay 1-Handle Kitchen Faucet","kitchen faucet",2.67',
    '4,200002,"Glacier Bay 1-Handle Kitchen Faucet","bathroom sink",1',
    '5,200003,"Hampton Bay 52 in.  Ceiling Fan","ceiling fan",3',
    '6,200003,"Hampton Bay 52 in.  Ceiling Fan","corner brace",1.67',
]


# -- WANDS ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wands() -> Catalog:
    return load_catalog("wands", WANDS)


def test_wands_fixture_is_in_upstream_layout():
    product_header = (WANDS / "product.csv").read_text(encoding="utf-8").splitlines()[0]
    assert product_header.split("\t") == [
        "product_id", "product_name", "product_class", "category hierarchy", "product_description",
        "product_features", "rating_count", "average_rating", "review_count",
    ]
    assert (WANDS / "query.csv").read_text(encoding="utf-8").splitlines()[0] == "query_id\tquery\tquery_class"
    assert (WANDS / "label.csv").read_text(encoding="utf-8").splitlines()[0] == "id\tquery_id\tproduct_id\tlabel"


def test_wands_counts(wands):
    assert wands.name == "wands"
    assert len(wands.products) == 8
    assert len(wands.queries) == 4
    assert len(wands.judgments) == 16
    assert wands.logs == []
    assert wands.bad_rows == []


def test_wands_gain_mapping(wands):
    assert Counter(j.gain for j in wands.judgments) == {2.0: 5, 1.0: 4, 0.0: 7}
    assert wands.judgments_by_query()["0"] == {"100": 2.0, "2045": 2.0, "5120": 1.0, "6634": 0.0}
    assert wands.judgments[0] == Judgment("0", "100", 2.0)


def test_wands_product_fields(wands):
    bed = wands.products["7750"]
    assert bed.title == "solid wood platform bed"
    assert bed.category == "Furniture / Bedroom Furniture / Beds & Headboards / Beds / Queen Size Beds"
    assert bed.brand is None
    assert bed.description.startswith("good , deep sleep starts with a sturdy frame")
    # An empty `category hierarchy` falls back to product_class.
    assert wands.products["8891"].category == "Outdoor Benches"


def test_wands_inches_survive_in_title(wands):
    assert wands.products["5120"].title == "27.5 '' wide tufted velvet accent chair"
    assert wands.products["6634"].title == "48 '' round dining table"


def test_wands_quoted_query_and_empty_class(wands):
    # Upstream quotes fields holding `"` CSV-style: "27.5"" velvet accent chair".
    assert wands.queries["2"] == Query("2", '27.5" velvet accent chair')
    assert wands.queries["3"] == Query("3", "wood bed frame")


def test_wands_bad_label_is_reported_with_line(tmp_path):
    folder = tmp_path / "wands"
    shutil.copytree(WANDS, folder)
    label_file = folder / "label.csv"
    lines = label_file.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].rsplit("\t", 1)[0] + "\tMaybe"  # file line 4
    lines.append("99\t0\t424242\tExact")  # file line 18: unknown product
    label_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    catalog = load_catalog("wands", folder)
    assert catalog.bad_rows == [
        BadRow(str(label_file), 4, "label 'Maybe' is not one of Exact, Partial, Irrelevant"),
        BadRow(str(label_file), 18, "unknown product_id '424242'"),
    ]
    assert len(catalog.judgments) == 15


def test_wands_duplicate_product_is_reported_and_the_first_kept(tmp_path):
    folder = tmp_path / "wands"
    shutil.copytree(WANDS, folder)
    product_file = folder / "product.csv"
    lines = product_file.read_text(encoding="utf-8").splitlines()
    first = lines[1].split("\t")
    lines.append("\t".join([first[0], "A Different Name"] + first[2:]))
    product_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    catalog = load_catalog("wands", folder)
    assert catalog.bad_rows == [BadRow(str(product_file), len(lines), f"duplicate product_id {first[0]!r}")]
    assert catalog.products[first[0]].title == " ".join(first[1].split())


def test_wands_missing_file(tmp_path):
    folder = tmp_path / "wands"
    shutil.copytree(WANDS, folder)
    (folder / "label.csv").unlink()
    with pytest.raises(CatalogError) as err:
        load_catalog("wands", folder)
    assert str(err.value) == f"{folder / 'label.csv'}: file not found"


# -- generic ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shop() -> Catalog:
    return load_catalog("generic", SHOP)


def test_generic_fixture_mixes_jsonl_and_csv():
    assert sorted(p.name for p in SHOP.iterdir()) == ["labels.csv", "logs.jsonl", "products.jsonl", "queries.csv"]


def test_generic_counts(shop):
    assert shop.name == "generic_shop"
    assert len(shop.products) == 12
    assert len(shop.queries) == 5
    assert len(shop.judgments) == 20
    assert len(shop.logs) == 10
    assert shop.bad_rows == []
    assert Counter(j.gain for j in shop.judgments) == {2.0: 5, 1.0: 5, 0.0: 10}


def test_generic_products_and_optional_fields(shop):
    assert shop.products["P100"] == Product(
        "P100", "DeWalt 20V Cordless Drill Driver Kit", brand="DeWalt", category="Power Tools > Drills",
        description="Compact 1/2 in. cordless drill driver with two 20V MAX batteries, charger and bag.",
    )
    assert shop.products["P108"].description is None  # key absent
    assert shop.products["P109"].description is None  # JSON null
    assert shop.products["P110"].category is None  # empty string
    # Only the required fields, and whitespace runs in the title collapsed.
    assert shop.products["P111"] == Product("P111", "Irwin Quick-Grip 12 in. Bar Clamp")
    assert shop.products["P111"].to_document() == {"product_id": "P111", "title": "Irwin Quick-Grip 12 in. Bar Clamp"}


def test_generic_queries_labels_and_logs(shop):
    assert shop.queries["Q1"] == Query("Q1", "cordless drill")
    assert shop.judgments_by_query()["Q1"] == {"P100": 2.0, "P101": 1.0, "P102": 1.0, "P103": 0.0}
    assert shop.logs[0] == LogEvent("Q1", "P100", 42, 120)
    assert sum(e.clicks for e in shop.logs) == 169
    assert sum(e.impressions for e in shop.logs) == 685
    assert all(isinstance(e.clicks, int) and isinstance(e.impressions, int) for e in shop.logs)


def test_generic_logs_are_optional(tmp_path):
    catalog = load_catalog("generic", small_generic(tmp_path / "shop"))
    assert (len(catalog.products), len(catalog.queries), len(catalog.judgments), catalog.logs) == (3, 2, 4, [])


def test_generic_csv_and_jsonl_give_the_same_fingerprint(tmp_path, shop):
    tables = shop_tables()
    as_csv = load_catalog("generic", write_shop(tmp_path / "csv", tables, dict.fromkeys(COLUMNS, "csv")))
    as_jsonl = load_catalog("generic", write_shop(tmp_path / "jsonl", tables, dict.fromkeys(COLUMNS, "jsonl")))
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == [
        "labels.csv", "logs.csv", "products.csv", "queries.csv"]
    assert sorted(p.name for p in (tmp_path / "jsonl").iterdir()) == [
        "labels.jsonl", "logs.jsonl", "products.jsonl", "queries.jsonl"]
    assert as_csv.bad_rows == as_jsonl.bad_rows == []
    assert as_csv.products == as_jsonl.products == shop.products
    assert as_csv.fingerprint() == as_jsonl.fingerprint() == shop.fingerprint()

    # ...and the fingerprint does see a one-grade change.
    tables["labels"][0] = {**tables["labels"][0], "grade": "1"}
    changed = load_catalog("generic", write_shop(tmp_path / "changed", tables, dict.fromkeys(COLUMNS, "csv")))
    assert changed.fingerprint() != shop.fingerprint()


def test_generic_prefers_jsonl_when_both_exist(tmp_path):
    folder = small_generic(tmp_path / "shop")
    write_jsonl(folder / "products.jsonl", [
        {"product_id": "A1", "title": "Hammer from JSONL"},
        {"product_id": "A2", "title": "Drill"},
        {"product_id": "A3", "title": "Roller"},
    ])
    assert load_catalog("generic", folder).products["A1"].title == "Hammer from JSONL"


def test_generic_needs_a_folder(tmp_path):
    file = tmp_path / "products.csv"
    file.write_text("product_id,title\n", encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        load_catalog("generic", file)
    assert str(err.value) == f"{file}: expected a folder with products, queries and labels files"


def test_generic_missing_table(tmp_path):
    folder = small_generic(tmp_path / "shop")
    (folder / "labels.csv").unlink()
    with pytest.raises(CatalogError) as err:
        load_catalog("generic", folder)
    assert str(err.value) == f"{folder}: no labels.jsonl or labels.csv"


# -- home-depot -------------------------------------------------------------------------------------
def test_home_depot_reads_latin1_train_csv(tmp_path):
    train = home_depot_file(tmp_path / "train.csv", HOME_DEPOT_ROWS)
    assert b"90\xb0 Corner" in train.read_bytes()  # really Latin-1 on disk, not UTF-8
    catalog = load_catalog("home-depot", train)
    assert catalog.name == "home-depot"
    assert catalog.bad_rows == []
    assert sorted(catalog.products) == ["200001", "200002", "200003"]  # de-duplicated by product_uid
    assert catalog.products["200001"] == Product("200001", "Everbilt 90° Corner Brace, Zinc")
    assert catalog.products["200003"].title == "Hampton Bay 52 in. Ceiling Fan"
    assert sorted(catalog.queries) == ["angle bracket", "bathroom sink", "ceiling fan", "corner brace", "kitchen faucet"]
    assert catalog.queries["corner brace"] == Query("corner brace", "corner brace")
    assert [(j.query_id, j.product_id, j.gain) for j in catalog.judgments] == [
        ("corner brace", "200001", 2.0),
        ("angle bracket", "200001", 1.33),
        ("kitchen faucet", "200002", 1.67),
        ("bathroom sink", "200002", 0.0),
        ("ceiling fan", "200003", 2.0),
        ("corner brace", "200003", 0.67),
    ]


def test_home_depot_path_may_be_the_folder(tmp_path):
    home_depot_file(tmp_path / "train.csv", HOME_DEPOT_ROWS)
    assert len(load_catalog("home-depot", tmp_path).judgments) == 6


def test_home_depot_folder_without_train_csv(tmp_path):
    with pytest.raises(CatalogError) as err:
        load_catalog("home-depot", tmp_path)
    assert str(err.value) == f"{tmp_path / 'train.csv'}: file not found"


def test_home_depot_bad_rows_keep_the_rest(tmp_path):
    rows = list(HOME_DEPOT_ROWS)
    rows[2] = '3,200002,"Glacier Bay 1-Handle Kitchen Faucet","kitchen faucet",abc'  # file line 4
    rows[4] = '5,200003,"Hampton Bay Ceiling Fan",3'  # file line 6: 4 fields
    rows.append('7,200001,"Everbilt 90° Corner Brace, Zinc","corner brace",2')  # line 8: duplicate pair
    rows.append('8,200004,"Husky Tool Box","tool box",3.5')  # line 9: out of range
    train = home_depot_file(tmp_path / "train.csv", rows)
    catalog = load_catalog("home-depot", train)
    assert catalog.bad_rows == [
        BadRow(str(train), 4, "relevance 'abc' is not a number"),
        BadRow(str(train), 6, "expected 5 fields, found 4"),
        BadRow(str(train), 8, "duplicate judgment for ('corner brace', 200001)"),
        BadRow(str(train), 9, "relevance 3.5 is outside 1..3"),
    ]
    assert str(catalog.bad_rows[0]) == f"{train}:4: relevance 'abc' is not a number"
    assert len(catalog.judgments) == 4
    assert sorted(catalog.products) == ["200001", "200002", "200003"]


def test_home_depot_strict_raises_at_the_first_bad_row(tmp_path):
    rows = list(HOME_DEPOT_ROWS)
    rows[2] = '3,200002,"Glacier Bay 1-Handle Kitchen Faucet","kitchen faucet",abc'
    train = home_depot_file(tmp_path / "train.csv", rows)
    with pytest.raises(MalformedRowError) as err:
        load_catalog("home-depot", train, strict=True)
    assert str(err.value) == f"malformed row at {train}:4: relevance 'abc' is not a number"
    assert isinstance(err.value, CatalogError)  # so the CLI reports it as one line


# -- bad input, generic -----------------------------------------------------------------------------
def test_missing_path_is_not_found(tmp_path):
    missing = tmp_path / "nowhere" / "train.csv"
    with pytest.raises(CatalogError) as err:
        load_catalog("home-depot", missing)
    assert str(err.value) == f"{missing}: not found"
    assert "not found" in str(err.value) and str(missing) in str(err.value)


def test_unknown_format(tmp_path):
    with pytest.raises(CatalogError) as err:
        load_catalog("excel", tmp_path)
    assert str(err.value) == "unknown catalog format 'excel'; choose one of home-depot, generic, wands"
    assert list(READERS) == ["home-depot", "generic", "wands"]


def test_label_with_unknown_ids_is_reported_with_line(tmp_path):
    folder = small_generic(tmp_path / "shop", labels=(
        "query_id,product_id,grade\n"
        "q1,A1,2\n"
        "q1,A999,1\n"        # line 3
        "q9,A1,1\n"          # line 4
        "q2,A2\n"            # line 5: wrong field count
        "q2,A3,-1\n"         # line 6
        "q2,A1,high\n"       # line 7
        "q2,A2,2\n"
    ))
    catalog = load_catalog("generic", folder)
    labels = str(folder / "labels.csv")
    assert catalog.bad_rows == [
        BadRow(labels, 3, "unknown product_id 'A999'"),
        BadRow(labels, 4, "unknown query_id 'q9'"),
        BadRow(labels, 5, "expected 3 fields, found 2"),
        BadRow(labels, 6, "grade -1.0 is negative"),
        BadRow(labels, 7, "grade 'high' is not a number"),
    ]
    assert catalog.judgments == [Judgment("q1", "A1", 2.0), Judgment("q2", "A2", 2.0)]


def test_generic_duplicate_label_is_reported_and_the_first_kept(tmp_path):
    folder = small_generic(tmp_path / "shop", labels="query_id,product_id,grade\nq1,A1,2\nq2,A2,2\nq1,A1,0\n")
    catalog = load_catalog("generic", folder)
    assert catalog.bad_rows == [BadRow(str(folder / "labels.csv"), 4, "duplicate label for ('q1', 'A1'); the first is kept")]
    assert catalog.judgments == [Judgment("q1", "A1", 2.0), Judgment("q2", "A2", 2.0)]


def test_line_numbers_count_multiline_csv_fields(tmp_path):
    folder = small_generic(tmp_path / "shop", products=(
        "product_id,title,description\n"
        'A1,Claw Hammer,"Forged steel.\nShock-reduction grip.\nLifetime warranty."\n'  # lines 2-4
        "A2,Cordless Drill,\n"  # line 5
        ",Nameless,\n"  # line 6
        "A2,Second Drill,\n"  # line 7
        "A3,Paint Roller,\n"
    ))
    catalog = load_catalog("generic", folder)
    products = str(folder / "products.csv")
    assert catalog.bad_rows == [
        BadRow(products, 6, "empty product_id or title"),
        BadRow(products, 7, "duplicate product_id 'A2'"),
    ]
    assert catalog.products["A1"].description == "Forged steel.\nShock-reduction grip.\nLifetime warranty."
    assert catalog.products["A2"].title == "Cordless Drill"


def test_jsonl_bad_lines_are_reported_with_line(tmp_path):
    folder = small_generic(tmp_path / "shop")
    (folder / "products.csv").unlink()
    products = folder / "products.jsonl"
    products.write_text(
        '{"product_id": "A1", "title": "Claw Hammer"}\n'
        "\n"  # blank lines are skipped but still counted
        '{"product_id": "A2", "title": "Cordless Drill"\n'  # line 3: truncated
        '["A3", "Paint Roller"]\n'  # line 4
        '{"product_id": "A3"}\n'  # line 5
        '{"product_id": "A3", "title": "Paint Roller"}\n',
        encoding="utf-8",
    )
    catalog = load_catalog("generic", folder)
    assert [(b.file, b.line) for b in catalog.bad_rows[:1]] == [(str(products), 3)]
    assert catalog.bad_rows[0].reason.startswith("invalid JSON (")
    assert catalog.bad_rows[1:] == [
        BadRow(str(products), 4, "expected a JSON object"),
        BadRow(str(products), 5, "missing field(s) title"),
        # A2 is gone, so its labels are bad rows too.
        BadRow(str(folder / "labels.csv"), 3, "unknown product_id 'A2'"),
        BadRow(str(folder / "labels.csv"), 4, "unknown product_id 'A2'"),
    ]
    assert sorted(catalog.products) == ["A1", "A3"]


def test_logs_clicks_over_impressions_and_bad_counts(tmp_path):
    folder = small_generic(tmp_path / "shop", logs=(
        "query_id,product_id,clicks,impressions\n"
        "q1,A1,3,10\n"
        "q1,A2,11,10\n"  # line 3
        "q2,A2,1.5,10\n"  # line 4
        "q2,A3,0,0\n"
    ))
    catalog = load_catalog("generic", folder)
    logs = str(folder / "logs.csv")
    assert catalog.bad_rows == [
        BadRow(logs, 3, "clicks (11) exceed impressions (10)"),
        BadRow(logs, 4, "clicks '1.5' is not an integer"),
    ]
    assert catalog.logs == [LogEvent("q1", "A1", 3, 10), LogEvent("q2", "A3", 0, 0)]


def test_generic_strict_raises_with_file_and_line(tmp_path):
    folder = small_generic(tmp_path / "shop", labels="query_id,product_id,grade\nq1,A1,2\nq1,A999,1\n")
    with pytest.raises(MalformedRowError) as err:
        load_catalog("generic", folder, strict=True)
    assert str(err.value) == f"malformed row at {folder / 'labels.csv'}:3: unknown product_id 'A999'"
    assert f"{folder / 'labels.csv'}:3" in str(err.value)
    # Not strict: the same folder reads, with the row reported.
    assert len(load_catalog("generic", folder).bad_rows) == 1


def test_generic_latin1_file_is_not_valid_utf8(tmp_path):
    folder = small_generic(tmp_path / "shop")
    products = folder / "products.csv"
    products.write_bytes("product_id,title\nA1,Claw Hammer\nA2,Drill bit set 118° tip\nA3,Roller\n".encode("latin-1"))
    with pytest.raises(CatalogError) as err:
        load_catalog("generic", folder)
    assert str(err.value) == f"{products}:3: not valid UTF-8 (byte 0xb0); convert the file to UTF-8"
    assert "not valid UTF-8" in str(err.value)


def test_generic_csv_missing_required_column(tmp_path):
    folder = small_generic(tmp_path / "shop", queries="query_id,text\nq1,hammer\n")
    with pytest.raises(CatalogError) as err:
        load_catalog("generic", folder)
    assert str(err.value) == f"{folder / 'queries.csv'}: header lacks column(s) query; found query_id, text"


def test_generic_empty_csv(tmp_path):
    folder = small_generic(tmp_path / "shop", queries="")
    with pytest.raises(CatalogError) as err:
        load_catalog("generic", folder)
    assert str(err.value) == f"{folder / 'queries.csv'}: file is empty, expected a header row"


# -- edge cases of the formats ------------------------------------------------------------------
def test_generic_rejects_non_finite_grade(tmp_path):
    folder = small_generic(tmp_path / "shop", labels="query_id,product_id,grade\nq1,A1,nan\nq2,A2,inf\n")
    catalog = load_catalog("generic", folder)
    assert catalog.judgments == []
    assert [b.line for b in catalog.bad_rows] == [2, 3]


def test_jsonl_with_line_separator_inside_a_string(tmp_path):
    folder = small_generic(tmp_path / "shop")
    (folder / "products.csv").unlink()
    write_jsonl(folder / "products.jsonl", [
        {"product_id": "A1", "title": "Claw Hammer", "description": "Forged steel\u2028Shock-reduction grip"},
        {"product_id": "A2", "title": "Cordless Drill"},
        {"product_id": "A3", "title": "Paint Roller"},
    ])
    catalog = load_catalog("generic", folder)
    assert catalog.bad_rows == []
    assert sorted(catalog.products) == ["A1", "A2", "A3"]


def test_generic_csv_with_utf8_bom(tmp_path):
    folder = small_generic(tmp_path / "shop")
    (folder / "queries.csv").write_text("query_id,query\nq1,hammer\nq2,drill\n", encoding="utf-8-sig")
    assert len(load_catalog("generic", folder).queries) == 2


# -- splits -----------------------------------------------------------------------------------------
def many_queries(n: int, name: str = "many") -> Catalog:
    catalog = Catalog(name=name)
    for i in range(n):
        catalog.queries[f"q{i:04d}"] = Query(f"q{i:04d}", f"query {i}")
    return catalog


def test_split_is_deterministic(shop):
    first = split_queries(shop, 13, 0.2, 0.2)
    second = split_queries(load_catalog("generic", SHOP), 13, 0.2, 0.2)
    assert first == second
    assert first.split_id == second.split_id
    assert len(first.split_id) == 12
    assert (first.dataset, first.data_fingerprint, first.seed) == ("generic_shop", shop.fingerprint(), 13)


def test_split_seed_changes_the_split_id(shop):
    assert split_queries(shop, 13, 0.2, 0.2).split_id != split_queries(shop, 14, 0.2, 0.2).split_id
    big = many_queries(300)
    a, b = split_queries(big, 1, 0.1, 0.1), split_queries(big, 2, 0.1, 0.1)
    assert a.split_id != b.split_id
    assert a.test != b.test  # the seed really reshuffles, not just relabels


def test_split_sides_are_disjoint_and_cover_all_queries():
    catalog = many_queries(1000)
    result = split_queries(catalog, 13, 0.1, 0.2)
    train, dev, test = set(result.train), set(result.dev), set(result.test)
    assert len(train) + len(dev) + len(test) == 1000  # no id on two sides, none repeated
    assert train | dev | test == set(catalog.queries)
    assert not (train & dev or train & test or dev & test)
    assert result.train == sorted(result.train)
    assert abs(len(test) / 1000 - 0.2) < 0.04
    assert abs(len(dev) / 1000 - 0.1) < 0.03
    assert result.side("dev") == result.dev
    with pytest.raises(SplitError):
        result.side("validation")


def test_adding_queries_moves_no_existing_query():
    before = many_queries(400)
    after = many_queries(400)
    for i in range(400, 520):
        after.queries[f"q{i:04d}"] = Query(f"q{i:04d}", f"query {i}")
    old, new = split_queries(before, 7, 0.1, 0.1), split_queries(after, 7, 0.1, 0.1)
    for name in ("train", "dev", "test"):
        assert set(old.side(name)) <= set(new.side(name))
    assert old.split_id != new.split_id  # different data, so a different split id


def test_split_rejects_fractions_without_room_for_train(shop):
    with pytest.raises(SplitError) as err:
        split_queries(shop, 13, 0.5, 0.5)
    assert str(err.value) == "fractions dev=0.5 test=0.5 leave no room for train"
    with pytest.raises(SplitError):
        split_queries(shop, 13, 0.1, 0.0)


def test_save_and_load_split_round_trip(tmp_path, shop):
    result = split_queries(shop, 13, 0.2, 0.2)
    path = save_split(result, tmp_path)
    assert path == split_path(tmp_path, "generic_shop") == tmp_path / "splits" / "generic_shop.json"
    loaded = load_split(path)
    assert isinstance(loaded, QuerySplit)
    assert loaded == result
    assert replace(loaded, seed=14) != result


def test_load_split_missing_path(tmp_path):
    missing = tmp_path / "splits" / "nope.json"
    with pytest.raises(SplitError) as err:
        load_split(missing)
    assert str(err.value) == f"{missing}: no split yet; run `shopsearch split` first"


def test_load_split_not_a_split_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"split_id": "x"}', encoding="utf-8")
    with pytest.raises(SplitError) as err:
        load_split(bad)
    assert str(err.value).startswith(f"{bad}: not a split file (")
    bad.write_text("not json", encoding="utf-8")
    with pytest.raises(SplitError):
        load_split(bad)
