"""`jobpred score`: the paper's file format and the project's predictions table, hand-computed."""

import json
import subprocess
import sys
from fractions import Fraction

import polars as pl
import pytest

from jobpred.eval.score import read_predictions, score_file

GT = {"onet_title": "Registered Nurses"}
# The paper's format: one object per test example, a prediction per model. Scored for "ours":
PAPER_ROWS = [
    {"ground_truth_occupation": GT, "predictions": {"ours": "Registered Nurses", "base": "x"}},  # exact: 1
    {"ground_truth_occupation": GT, "predictions": {"ours": "registered nurses "}},  # exact after mapping: 1
    {"ground_truth_occupation": GT, "predictions": {"ours": "29-1141.00"}},  # exact, as a code: 1
    {"ground_truth_occupation": GT, "predictions": {"ours": "Clinical Nurse Specialists"}},  # Index 1: 1/2
    {"ground_truth_occupation": GT,
     "predictions": {"ours": "Licensed Practical and Licensed Vocational Nurses"}},  # Index 5: 1/6
    {"ground_truth_occupation": GT, "predictions": {"ours": "Hospitalists"}},  # Index 20: 1/21
    {"ground_truth_occupation": GT, "predictions": {"ours": "Chief Executives"}},  # valid, unrelated: 0
    {"ground_truth_occupation": GT, "predictions": {"ours": "Head Nurse of Everything"}},  # invalid: 0
    {"ground_truth_occupation": GT, "predictions": {"base": "Registered Nurses"}},  # no "ours" key: 0
    {"ground_truth_occupation": GT, "predictions": {"ours": ""}},  # empty: 0
    {"ground_truth_occupation": GT, "predictions": {"ours": []}},  # empty list: 0
    {"ground_truth_occupation": GT, "predictions": {"ours": None}},  # null: 0
    {"ground_truth_occupation": GT, "predictions": {"ours": 42}},  # not text: invalid, 0
]
N = len(PAPER_ROWS)
ACC_EM = round(float(Fraction(3, N) * 100), 6)
ACC_RM = round(float((3 + Fraction(1, 2) + Fraction(1, 6) + Fraction(1, 21)) / N * 100), 6)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "jobpred.cli", "score", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture()
def paper_json(tmp_path):
    path = tmp_path / "paper.json"
    path.write_text(json.dumps(PAPER_ROWS))
    return path


def test_cli_reproduces_the_hand_computed_paper_case(paper_json):
    out = _cli("--input", str(paper_json), "--predictor", "ours")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)  # one JSON object
    assert result["AccEM"] == ACC_EM == 23.076923
    assert result["AccRM"] == ACC_RM == 28.571429
    assert (result["total"], result["valid"], result["invalid"], result["missing"]) == (13, 7, 2, 4)
    assert result["format"] == "paper" and result["predictor"] == "ours"
    assert result["ci"]["AccEM"][0] <= ACC_EM <= result["ci"]["AccEM"][1]


def test_json_lines_is_the_same_file(tmp_path, paper_json):
    lines = tmp_path / "paper.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in PAPER_ROWS) + "\n")
    a = score_file(paper_json, "ours", bootstrap=100)
    b = score_file(lines, "ours", bootstrap=100)
    assert {k: v for k, v in a.items() if k != "input"} == {k: v for k, v in b.items() if k != "input"}


def test_other_predictor_in_the_same_file(paper_json):
    result = score_file(paper_json, "base", bootstrap=0)
    # "x" is invalid; the row with base = Registered Nurses is exact; every other row lacks "base".
    assert result["AccEM"] == round(100 / N, 6) and result["missing"] == N - 2 and result["invalid"] == 1


def test_unknown_predictor_is_an_error_listing_the_names(paper_json):
    out = _cli("--input", str(paper_json), "--predictor", "gpt-9")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "'gpt-9'" in out.stderr and "['base', 'ours']" in out.stderr
    with pytest.raises(ValueError, match="choose one with --predictor"):
        score_file(paper_json)


def test_one_predictor_needs_no_name(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps([{"ground_truth_occupation": GT, "predictions": {"m": "Registered Nurses"}}]))
    assert score_file(path, bootstrap=0)["AccEM"] == 100.0


def test_an_empty_list_scores_nothing_without_crashing(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("[]")
    out = _cli("--input", str(path), "--predictor", "ours")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["total"] == 0 and result["AccEM"] is None and result["AccRM"] is None


def test_bad_files_fail_with_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ground_truth_occupation": ')
    out = _cli("--input", str(bad))
    assert out.returncode == 2 and "not JSON" in out.stderr and "Traceback" not in out.stderr
    assert _cli("--input", str(tmp_path / "nope.json")).returncode == 2
    table = tmp_path / "t.parquet"
    pl.DataFrame({"example_id": ["a"], "guess": ["x"]}).write_parquet(table)
    out = _cli("--input", str(table))
    assert out.returncode == 2 and "target_code" in out.stderr and "predicted_code" in out.stderr


def test_project_table_parquet_and_jsonl(tmp_path):
    rows = {
        "example_id": ["e1", "e2", "e3", "e4", "e5"],
        "target_code": ["29-1141.00"] * 5,
        "predicted_code": ["29-1141.00", None, "29-1141.04", None, None],
        "predicted_title": [None, "Registered Nurses", None, "Nurse", None],  # the code wins where both
        "ranked_codes": [["29-1141.00"], ["11-1011.00", "29-1141.00"], ["29-1141.04"], [], None],
    }
    pq_path, jl_path = tmp_path / "p.parquet", tmp_path / "p.jsonl"
    pl.DataFrame(rows).write_parquet(pq_path)
    pl.DataFrame(rows).write_ndjson(jl_path)
    for path in (pq_path, jl_path):
        result = score_file(path, bootstrap=0)
        assert result["format"] == "table"
        assert result["AccEM"] == 40.0 and result["AccRM"] == 50.0  # (1 + 1 + 1/2) / 5
        assert (result["valid"], result["invalid"], result["missing"]) == (3, 1, 1)
        assert result["Acc@1"] == 20.0 and result["Acc@5"] == 40.0 and result["MRR"] == 30.0  # (1 + 1/2) / 5


def test_history_columns_give_the_breakdowns(tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"target_code": ["29-1141.00", "29-1141.00"], "predicted_code": ["29-1141.00", None],
                  "history_len": [1, 3], "last_code": ["29-1141.00", "11-1011.00"]}).write_parquet(path)
    _, meta = read_predictions(path)
    assert meta == {"format": "table", "predictor": "p"}
    parts = score_file(path, bootstrap=0)["breakdowns"]
    assert {g["group"]: g["n"] for g in parts["history_length"]} == {"1": 1, "3-4": 1}
    assert {g["group"]: g["AccEM"] for g in parts["major_group_change"]} == {"same": 100.0, "changed": 0.0}


def test_a_fallback_first_choice_is_a_miss_strictly_and_scored_as_served_beside_it(tmp_path):
    """The paper counts an answer the model did not give as wrong; the served figure is what a user got."""
    nurse, practitioner = "29-1141.00", "29-1171.00"
    table = pl.DataFrame({
        "example_id": ["a", "b", "c", "d"],
        "target_code": [nurse] * 4,
        "predicted_code": [nurse, nurse, practitioner, nurse],
        "ranked_codes": [[nurse], [nurse], [practitioner, nurse], [nurse]],
        "answer_method": ["exact", "history", "normalised", "prior"],  # b and d: the model gave nothing usable
    })
    path = tmp_path / "joint.parquet"
    table.write_parquet(path)
    result = score_file(path, bootstrap=0)
    assert result["AccEM"] == 25.0 and result["fallback"] == 2 and result["valid"] == 2  # only a counts
    assert result["Acc@5"] == 50.0  # a, and c's second choice; the fall-backs' lists count for nothing
    assert result["served"]["AccEM"] == 75.0 and result["served"]["Acc@5"] == 100.0
    baseline = table.drop("answer_method")  # a baseline's first choice is its prediction
    baseline.write_parquet(tmp_path / "stay.parquet")
    plain = score_file(tmp_path / "stay.parquet", bootstrap=0)
    assert plain["AccEM"] == 75.0 and "served" not in plain and plain["fallback"] == 0
