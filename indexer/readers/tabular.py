"""Row sources shared by the readers: CSV/TSV and JSON Lines, with line numbers and clear errors."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from indexer.records import CatalogError, RowErrors

csv.field_size_limit(16 * 1024 * 1024)  # product descriptions can be long


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The whole file as text; a file that is not in `encoding` is an error naming the line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CatalogError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise CatalogError(f"{path}: is a folder, expected a file") from None
    if encoding.lower().replace("-", "") == "utf8" and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # Excel's "CSV UTF-8" starts with a byte-order mark; it is not part of the header
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise CatalogError(
            f"{path}:{line}: not valid {encoding.upper()} (byte 0x{raw[err.start]:02x}); "
            f"convert the file to {encoding.upper()}"
        ) from None


def iter_rows(
    path: Path,
    required: tuple[str, ...],
    errors: RowErrors,
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs from a CSV/TSV file with a header, or from a .jsonl file."""
    text = read_text(path, encoding)
    if path.suffix == ".jsonl":
        yield from _jsonl_rows(path, text, required, errors)
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise CatalogError(f"{path}: file is empty, expected a header row")
    header = [name.strip() for name in header]
    missing = [name for name in required if name not in header]
    if missing:
        raise CatalogError(f"{path}: header lacks column(s) {', '.join(missing)}; found {', '.join(header)}")
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            errors.report(path, line, f"unreadable CSV ({err})")
            continue
        if not row:
            continue
        if len(row) != len(header):
            errors.report(path, line, f"expected {len(header)} fields, found {len(row)}")
            continue
        yield line, dict(zip(header, row))


def _jsonl_rows(path: Path, text: str, required: tuple[str, ...], errors: RowErrors):
    # split on newlines only: str.splitlines() also breaks at U+2028 etc., which JSON strings may hold
    for line, raw in enumerate(text.split("\n"), start=1):
        raw = raw.rstrip("\r")
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as err:
            errors.report(path, line, f"invalid JSON ({err.msg})")
            continue
        if not isinstance(row, dict):
            errors.report(path, line, "expected a JSON object")
            continue
        missing = [name for name in required if name not in row]
        if missing:
            errors.report(path, line, f"missing field(s) {', '.join(missing)}")
            continue
        yield line, {key: "" if value is None else str(value) for key, value in row.items()}


def find_table(folder: Path, stem: str, *, optional: bool = False) -> Path | None:
    """`folder/stem.jsonl` or `folder/stem.csv`, whichever exists."""
    for suffix in (".jsonl", ".csv"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    if optional:
        return None
    raise CatalogError(f"{folder}: no {stem}.jsonl or {stem}.csv")
