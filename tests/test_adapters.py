"""jobpred.data.adapters on tiny hand-made JobHop / Karrierewege / DECORTE fixtures (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from jobpred.data.adapters import FORMATS, convert, normalize_date
from jobpred.schema import CareerRecord, describe_error
from jobpred.taxonomy import read_table

ASSETS = Path(__file__).parent / "assets" / "adapters"


def _run(tmp_path: Path, fmt: str, name: str, **kw) -> tuple[dict, dict[str, dict]]:
    out = tmp_path / f"{fmt}.jsonl"
    counts = convert(fmt, ASSETS / name, out, **kw)
    lines = out.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    by_id = {r["person_id"]: r for r in records}
    assert len(by_id) == len(records), "one record per person"
    return counts, by_id


def _invalid(records: dict[str, dict]) -> dict[str, str]:
    """person_id -> rejection reason for records the validator rejects."""
    bad = {}
    for pid, rec in records.items():
        try:
            CareerRecord.model_validate(rec)
        except ValidationError as exc:
            bad[pid] = describe_error(exc)[1]
    return bad


# ---- jobhop ---------------------------------------------------------------------------------------


def test_jobhop_records_counts_and_validation(tmp_path):
    counts, recs = _run(tmp_path, "jobhop", "jobhop.csv")
    assert counts == {
        "rows": 7,
        "persons": 3,
        "experiences_with_code": 6,
        "experiences_without_code": 1,
        "rows_without_person": 1,
    }
    assert list(recs) == ["r1", "r2", "", "r3"]  # order of first appearance; null id kept, not dropped
    bad = _invalid(recs)
    assert set(bad) == {"", "r3"}  # only the deliberately broken ones
    assert "person_id" in bad[""]
    assert "experience.0.start" in bad["r3"]


def test_jobhop_maps_esco_code_titles_quarters_and_order(tmp_path):
    _, recs = _run(tmp_path, "jobhop", "jobhop.csv")
    r1 = recs["r1"]["experience"]
    # File order is 2016, 2012, 2019: sorted by start within the person.
    assert [e["start"] for e in r1] == ["2012-07", "2016-01", "2019-04"]
    assert [e.get("end") for e in r1] == ["2015-12", "2018-10", None]  # Q4 -> October; YYYY-MM-DD -> YYYY-MM
    analyst = r1[1]
    assert analyst["title"] == "software analyst"  # the ESCO label of 2512.2
    assert analyst["onet_code"].startswith("15-12")
    assert recs["r1"]["education"] == [{"degree": "master"}]  # repeated per row, kept once
    assert recs["r2"]["education"] == []


def test_jobhop_code_with_leading_zero_stays_a_string(tmp_path):
    # '0110.10' would become the float 110.1 under CSV type inference and then map to nothing.
    _, recs = _run(tmp_path, "jobhop", "jobhop.csv")
    first = recs["r2"]["experience"][0]
    assert first["title"] == "lieutenant"
    crosswalk = read_table("esco_crosswalk").filter(pl.col("esco_code") == "0110.10")["code"].to_list()
    assert first["onet_code"] in crosswalk


def test_unmapped_esco_code_leaves_onet_code_absent(tmp_path):
    # 2641.4.5 'medical writer' is an ESCO occupation with no O*NET crosswalk row.
    assert read_table("esco_crosswalk").filter(pl.col("esco_code") == "2641.4.5").height == 0
    _, recs = _run(tmp_path, "jobhop", "jobhop.csv")
    writer = recs["r1"]["experience"][2]
    assert writer["title"] == "medical writer"
    assert "onet_code" not in writer


def test_unparseable_date_is_passed_through_unchanged(tmp_path):
    _, recs = _run(tmp_path, "jobhop", "jobhop.csv")
    assert recs["r3"]["experience"][0]["start"] == "2015-Q9"


# ---- ESCO -> O*NET choice -------------------------------------------------------------------------


def test_multi_code_esco_picks_most_similar_title(tmp_path):
    # ISCO 2310 maps to 36 O*NET codes; 'Education Teachers, Postsecondary' is the closest title,
    # not the first code (19-4061.00).
    assert read_table("esco_crosswalk").filter(pl.col("esco_code") == "2310").height > 30
    _, recs = _run(tmp_path, "jobhop", "jobhop.csv")
    assert recs["r1"]["experience"][0]["onet_code"] == "25-1081.00"
    # 'advanced nurse practitioner' (2221.1, 9 candidates) -> Nurse Practitioners; 'cook' -> not 35-1011.
    _, recs = _run(tmp_path, "decorte", "decorte.jsonl")
    nurse, cook = recs["17"]["experience"][1], recs["17"]["experience"][0]
    assert nurse["onet_code"] == "29-1171.00"
    assert cook["onet_code"] == "35-2011.00"


# ---- karrierewege ---------------------------------------------------------------------------------


def test_karrierewege_without_dates_raises_naming_columns(tmp_path):
    with pytest.raises(ValueError) as exc:
        convert("karrierewege", ASSETS / "karrierewege.csv", tmp_path / "x.jsonl")
    msg = str(exc.value)
    assert "start_date" in msg and "start" in msg and "synthetic_dates=True" in msg
    assert not (tmp_path / "x.jsonl").exists()


def test_karrierewege_synthetic_dates_order_by_position(tmp_path):
    counts, recs = _run(tmp_path, "karrierewege", "karrierewege.csv", synthetic_dates=True)
    assert counts["rows"] == 4 and counts["persons"] == 2 and counts["experiences_without_code"] == 0
    k1 = recs["k1"]["experience"]
    assert [e["start"] for e in k1] == ["2001", "2002", "2003"]
    assert [e["title"] for e in k1] == ["Junior analyst", "Line cook", "advanced nurse practitioner"]
    assert k1[0]["onet_code"].startswith("15-12")  # software analyst URI
    assert recs["k2"]["experience"][0]["onet_code"] == "23-1011.00"  # ESCO code '2611.1' (lawyer)
    assert _invalid(recs) == {}


def test_synthetic_dates_need_a_position_column(tmp_path):
    src = tmp_path / "kw.csv"
    pl.read_csv(ASSETS / "karrierewege.csv").drop("position").write_csv(src)
    with pytest.raises(ValueError, match="position"):
        convert("karrierewege", src, tmp_path / "x.jsonl", synthetic_dates=True)


def test_karrierewege_parquet_with_dates(tmp_path):
    counts, recs = _run(tmp_path, "karrierewege", "karrierewege_dated.parquet")
    assert counts["persons"] == 2
    d1 = recs["d1"]["experience"]
    assert [(e["title"], e["start"], e.get("end")) for e in d1] == [
        ("Cook", "2009-09", "2015-03"),
        ("Nurse practitioner", "2015-04", None),
    ]
    assert _invalid(recs) == {}


# ---- decorte --------------------------------------------------------------------------------------


def test_decorte_titles_descriptions_and_ids(tmp_path):
    counts, recs = _run(tmp_path, "decorte", "decorte.jsonl")
    assert counts == {
        "rows": 5,
        "persons": 3,
        "experiences_with_code": 3,
        "experiences_without_code": 2,
        "rows_without_person": 0,
    }
    assert set(recs) == {"17", "18", "19"}  # integer ids become strings
    p17 = recs["17"]["experience"]
    assert [e["title"] for e in p17] == ["Cook", "Staff Nurse"]  # free text kept, sorted by start
    assert p17[0]["description"] == "Restaurant kitchen"
    p18 = recs["18"]["experience"]
    assert p18[0]["title"] == "lawyer"  # null title falls back to the ESCO label
    assert "onet_code" not in p18[1] and p18[1]["title"] == "Ghost writer"  # unknown URI
    bad = _invalid(recs)
    assert set(bad) == {"19"} and "experience.0.start" in bad["19"]


# ---- shared ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2015-Q3", "2015-07"),
        ("2015 Q1", "2015-01"),
        ("2015q4", "2015-10"),
        ("Q2 2015", "2015-04"),
        ("2015-03-31", "2015-03"),
        ("2015-3", "2015-03"),
        ("2015-03-31 00:00:00", "2015-03"),
        ("2015", "2015"),
        (" 2015-06 ", "2015-06"),
        ("", None),
        (None, None),
        ("2015-13", "2015-13"),  # unchanged: the validator says why
        ("2015-Q5", "2015-Q5"),
        ("present", "present"),
    ],
)
def test_normalize_date(raw, expected):
    assert normalize_date(raw) == expected


def test_unknown_format_and_extension(tmp_path):
    assert FORMATS == ("jobhop", "karrierewege", "decorte")
    with pytest.raises(ValueError, match="unknown format"):
        convert("linkedin", ASSETS / "jobhop.csv", tmp_path / "x.jsonl")
    src = tmp_path / "data.xlsx"
    src.write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported extension"):
        convert("jobhop", src, tmp_path / "x.jsonl")


def test_missing_required_column_is_named(tmp_path):
    src = tmp_path / "jh.csv"
    src.write_text("resume_id,start_date\nr1,2015-Q1\n")
    with pytest.raises(ValueError, match="matched_code"):
        convert("jobhop", src, tmp_path / "x.jsonl")


def test_current_job_words_mean_an_open_end():
    from jobpred.data.adapters import _normalize_end

    assert _normalize_end("Present") is None and _normalize_end(" now ") is None
    assert _normalize_end("2015-Q2") == "2015-04"
    assert _normalize_end("someday") == "someday"  # still passed through for the validator to reject


def test_prepare_reads_a_public_format_end_to_end(tmp_path):
    """`jobpred prepare --format jobhop`: conversion, then the standard validation and split."""
    import json

    from jobpred.config import PrepareConfig
    from jobpred.data.prepare import prepare

    summary = prepare(ASSETS / "jobhop.csv", tmp_path / "run", PrepareConfig(engine="local"), input_format="jobhop")
    assert summary["read"] == summary["accepted"] + summary["rejected"] == summary["conversion"]["persons"] + summary[
        "conversion"]["rows_without_person"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["prepare"]["format"] == "jobhop"
    assert summary["examples"] >= 1
