"""The real Home Depot file from ../shared reads whole: counts as its README gives them."""

from __future__ import annotations

from indexer.readers import load_catalog


def test_home_depot_reads_every_row(home_depot_path) -> None:
    catalog = load_catalog("home-depot", home_depot_path)
    assert (len(catalog.products), len(catalog.queries), len(catalog.judgments)) == (54_667, 11_795, 74_067)
    assert catalog.bad_rows == []
    gains = {j.gain for j in catalog.judgments}
    assert min(gains) == 0.0 and max(gains) == 2.0
