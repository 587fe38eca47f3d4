"""Convert public career data sets into jobpred career records (one JSON object per line).

Supported formats (:data:`FORMATS`), each one row per work experience:

* ``jobhop`` -- VDAB JobHop: ``resume_id``, ``matched_code`` (ESCO code such as ``2512.2``),
  ``start_date``, ``end_date``, optional ``university_level`` (kept as ``{"degree": level}``).
  The title is the ESCO label of the code.
* ``karrierewege`` -- Karrierewege / Karrierewege+: person id, ESCO URI or code, optional title,
  description, start/end, and a position column. Without date columns it raises, unless
  ``synthetic_dates=True``, which sets ``start`` to ``f"{2000 + position:04d}"``.
* ``decorte`` -- DECORTE anonymous working histories: person id, title, description, start, end,
  ESCO occupation URI.

Column names are matched case-insensitively against the candidates in ``_SPECS``. Inputs are CSV/TSV,
JSON Lines (``.jsonl``/``.ndjson``) or Parquet, chosen by extension.

ESCO -> O*NET: URI -> ESCO code (``esco_occupations``) -> O*NET codes (``esco_crosswalk``); of several,
the one whose O*NET title is most similar to the ESCO label (rapidfuzz ``token_set_ratio``, case-folded;
ties -> smallest code). No mapping -> ``onet_code`` is left out and the title is normalised later.
Dates become ``YYYY-MM`` (quarter ``Qn`` -> month ``3n-2``) or ``YYYY``; anything unparseable is passed
through unchanged, and a row without a person id becomes its own record with ``person_id ""``, so the
validator rejects such records with a reason instead of this module dropping or fixing them silently.

Run as::

    python -m jobpred.data.adapters jobhop jobhop_train.csv data/jobhop.jsonl
    python -m jobpred.data.adapters karrierewege kw.parquet data/kw.jsonl --synthetic-dates

or from Python::

    from jobpred.data.adapters import convert
    counts = convert("decorte", "histories.jsonl", "data/decorte.jsonl")
    # {"rows": ..., "persons": ..., "experiences_with_code": ..., "experiences_without_code": ...,
    #  "rows_without_person": ...}
"""

from __future__ import annotations

import argparse
import functools
import json
import re
from pathlib import Path

import polars as pl

from jobpred.storage import Location, location
from jobpred.taxonomy import read_table

FORMATS = ("jobhop", "karrierewege", "decorte")

# Candidate source columns per role, first match wins. "start" is required unless synthetic dates apply.
_SPECS: dict[str, dict[str, tuple[str, ...]]] = {
    "jobhop": {
        "person": ("resume_id",),
        "esco": ("matched_code",),
        "start": ("start_date",),
        "end": ("end_date",),
        "education": ("university_level",),
    },
    "karrierewege": {
        "person": ("_id", "id", "person_id", "cv_id", "resume_id"),
        "esco": ("esco_uri", "occupation_uri", "preferredLabel_uri", "esco_code", "code"),
        "title": ("title", "job_title", "experience_title"),
        "description": ("description", "job_description", "experience_description"),
        "start": ("start_date", "start"),
        "end": ("end_date", "end"),
        "position": ("position", "order", "index", "sequence"),
    },
    "decorte": {
        "person": ("person_id", "id", "history_id", "cv_id"),
        "esco": ("esco_uri", "occupation", "uri", "esco_occupation"),
        "title": ("title",),
        "description": ("description",),
        "start": ("start", "start_date"),
        "end": ("end", "end_date"),
    },
}
_ROLES = ("person", "esco", "title", "description", "start", "end", "position", "education")

_QUARTER = re.compile(r"^(\d{4})\s*[-/ ]?\s*[Qq]([1-4])$")
_QUARTER_FIRST = re.compile(r"^[Qq]([1-4])\s*[-/ ]?\s*(\d{4})$")
_YEAR_MONTH = re.compile(r"^(\d{4})[-/](\d{1,2})(?:[-/]\d{1,2})?(?:[T ].*)?$")  # YYYY-MM[-DD][ time]
_YEAR = re.compile(r"^(\d{4})(?:\.0+)?$")  # '2015.0' is a float-typed year column, not a month


def normalize_date(value: str | None) -> str | None:
    """'2015-Q3' / '2015 Q3' / 'Q3 2015' -> '2015-07'; '2015-03-31' -> '2015-03'; '2015' -> '2015'.
    Empty -> None; anything else (including month 13) is returned unchanged for the validator to reject."""
    if value is None or not value.strip():
        return None
    v = value.strip()
    if m := _QUARTER.match(v):
        return f"{m.group(1)}-{3 * int(m.group(2)) - 2:02d}"
    if m := _QUARTER_FIRST.match(v):
        return f"{m.group(2)}-{3 * int(m.group(1)) - 2:02d}"
    if (m := _YEAR_MONTH.match(v)) and 1 <= int(m.group(2)) <= 12:
        return f"{m.group(1)}-{int(m.group(2)):02d}"
    if m := _YEAR.match(v):
        return m.group(1)
    return value


_CURRENT = frozenset({"present", "current", "now", "ongoing", "today", "heute", "actuel", "huidig"})


def _normalize_end(value: str | None) -> str | None:
    """End dates as exports write a current job ("present", "now") mean an open end: null."""
    if value is not None and value.strip().casefold() in _CURRENT:
        return None
    return normalize_date(value)


@functools.cache
def _esco_index() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(URI uuid -> ESCO code, ESCO code -> label, ESCO code -> best O*NET code), built once."""
    from rapidfuzz import fuzz, utils

    eo, cw, occ = (read_table(n) for n in ("esco_occupations", "esco_crosswalk", "occupations"))
    # Key by the trailing uuid so http/https or a bare uuid resolve the same.
    by_uuid = {u.rstrip("/").rsplit("/", 1)[-1]: c for u, c in zip(eo["concept_uri"], eo["esco_code"])}
    # Occupation labels win over the crosswalk's; the crosswalk adds the 4-digit ISCO group titles.
    labels = dict(zip(cw["esco_code"], cw["esco_title"])) | dict(zip(eo["esco_code"], eo["label"]))
    onet_title = dict(zip(occ["code"], occ["title"]))
    best = {}
    for (code,), group in cw.group_by("esco_code"):
        # sorted() + max() keeps the first maximum, so ties go to the smallest O*NET code.
        best[code] = max(
            sorted(group["code"]),
            key=lambda c: fuzz.token_set_ratio(
                labels[code], onet_title.get(c, ""), processor=utils.default_process
            ),
        )
    return by_uuid, labels, best


def _resolve_esco(value: str) -> tuple[str | None, str | None]:
    """ESCO URI, bare uuid or code -> (ESCO label, O*NET code); (None, None) when unknown."""
    by_uuid, labels, best = _esco_index()
    v = value.strip()
    code = v if v in labels else by_uuid.get(v.rstrip("/").rsplit("/", 1)[-1])
    return labels.get(code), best.get(code)


def _read(path: Location) -> pl.DataFrame:
    name, path = path.name.lower(), str(path)  # polars reads local paths and s3:// / gs:// URIs alike
    # CSV as all-strings: inference would turn ESCO code '0110.10' into the float 110.1.
    if name.endswith((".csv", ".tsv")):
        return pl.read_csv(path, infer_schema=False, separator="\t" if name.endswith(".tsv") else ",")
    if name.endswith((".jsonl", ".ndjson")):
        return pl.read_ndjson(path, infer_schema_length=None)
    if name.endswith(".parquet"):
        return pl.read_parquet(path)
    raise ValueError(f"{path}: unsupported extension; expected .csv, .tsv, .jsonl, .ndjson or .parquet")


def _pick_columns(fmt: str, columns: list[str], synthetic_dates: bool) -> dict[str, str | None]:
    """Role -> source column (or None); ValueError naming the candidates of every missing required role."""
    spec = _SPECS[fmt]
    lower = {c.lower(): c for c in columns}
    found = {
        role: next((lower[c.lower()] for c in spec.get(role, ()) if c.lower() in lower), None)
        for role in _ROLES
    }
    required = ["person", "esco"]
    if found["start"] is None:
        # No dates: only an explicit opt-in may invent years, and only from a position column.
        required.append("position" if synthetic_dates and spec.get("position") else "start")
    missing = [f"{r} (one of {list(spec.get(r, ()))})" for r in required if found[r] is None]
    if missing:
        hint = "" if synthetic_dates or not spec.get("position") else "; or pass synthetic_dates=True"
        raise ValueError(
            f"{fmt} input is missing column(s): {'; '.join(missing)}{hint}. Columns present: {columns}"
        )
    return found


def _per_value(values: pl.Series, fn) -> dict:
    """fn on each distinct value only: data sets repeat the same codes and dates a lot."""
    return {v: fn(v) for v in values.drop_nulls().unique().to_list()}


def _lookup(col: str, table: dict) -> pl.Expr:
    return pl.col(col).replace_strict(table, default=None, return_dtype=pl.String)


def _normalized_frame(raw: pl.DataFrame, cols: dict[str, str | None]) -> pl.DataFrame:
    """One row per experience with columns person, title, description, start, end, onet_code, education,
    _pos, _row."""

    def text(role: str) -> pl.Expr:
        src = cols[role]
        expr = pl.col(src).cast(pl.String).str.strip_chars() if src else pl.lit(None, pl.String)
        return pl.when(expr == "").then(None).otherwise(expr).alias(role)

    df = raw.select(*(text(r) for r in _ROLES), _row=pl.int_range(pl.len()))
    esco = _per_value(df["esco"], _resolve_esco)
    df = df.with_columns(
        # A missing free-text title falls back to the data set's own ESCO label.
        title=pl.coalesce("title", _lookup("esco", {k: v[0] for k, v in esco.items()})),
        onet_code=_lookup("esco", {k: v[1] for k, v in esco.items()}),
        start=_lookup("start", _per_value(df["start"], normalize_date)),
        end=_lookup("end", _per_value(df["end"], _normalize_end)),
        _pos=pl.col("position").cast(pl.Float64, strict=False).cast(pl.Int64, strict=False),
    )
    if cols["start"] is None:  # _pick_columns only lets this through with synthetic_dates and a position
        df = df.with_columns(start=(pl.col("_pos") + 2000).cast(pl.String).str.zfill(4))
    return df


def _group(df: pl.DataFrame) -> pl.DataFrame:
    """One row per person, in order of first appearance; experiences sorted by start (stable: ties keep
    position, then file order). Rows without a person id each get a key of their own."""
    key = pl.when(pl.col("person").is_null()).then(pl.format("\x00row{}", "_row")).otherwise("person")
    df = df.with_columns(_key=key).with_columns(_first=pl.col("_row").min().over("_key"))
    df = df.sort(["_first", "start", "_pos", "_row"], nulls_last=True)
    exp = pl.struct("title", "start", "end", "description", "onet_code")
    return df.group_by("_key", maintain_order=True).agg(
        pl.col("person").first(),
        exp.alias("experience"),
        pl.col("education").drop_nulls().unique(maintain_order=True),
    )


def _record(row: dict) -> dict:
    # None-valued keys are left out: an absent onet_code means "normalise the title later", and an
    # absent title/start makes the validator name the missing field.
    experience = [{k: v for k, v in e.items() if v is not None} for e in row["experience"]]
    return {
        "person_id": row["person"] or "",
        "education": [{"degree": level} for level in row["education"]],
        "experience": experience,
    }


def convert(fmt: str, path: str | Path, out_jsonl: str | Path, *, synthetic_dates: bool = False) -> dict:
    """Read a public data set, write one career record per line to out_jsonl (json, ensure_ascii=False),
    return counts {"rows", "persons", "experiences_with_code", "experiences_without_code",
    "rows_without_person"}. ``persons`` counts distinct person ids; each row without one is an extra
    record with ``person_id ""``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    raw = _read(location(path))
    df = _normalized_frame(raw, _pick_columns(fmt, raw.columns, synthetic_dates))
    grouped = _group(df)
    out = location(out_jsonl)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for row in grouped.iter_rows(named=True):
            f.write(json.dumps(_record(row), ensure_ascii=False) + "\n")
    with_code = int(df["onet_code"].is_not_null().sum())
    return {
        "rows": df.height,
        "persons": int(df["person"].drop_nulls().n_unique()),
        "experiences_with_code": with_code,
        "experiences_without_code": df.height - with_code,
        "rows_without_person": int(df["person"].is_null().sum()),
    }


def _main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m jobpred.data.adapters", description=__doc__.splitlines()[0])
    p.add_argument("format", choices=FORMATS)
    p.add_argument("input")
    p.add_argument("output", help="career records, JSON Lines")
    p.add_argument("--synthetic-dates", action="store_true", help="start = 2000 + position when no dates")
    a = p.parse_args(argv)
    print(json.dumps(convert(a.format, a.input, a.output, synthetic_dates=a.synthetic_dates)))


if __name__ == "__main__":
    _main()
