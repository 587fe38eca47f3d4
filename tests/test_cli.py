"""The console script, end to end in subprocesses: the way users call it."""

import json
import subprocess
import sys

import polars as pl

JOBPRED = [sys.executable, "-m", "jobpred.cli"]


def _run(*args, stdin=None):
    return subprocess.run([*JOBPRED, *args], capture_output=True, text=True, input=stdin, timeout=300)


def test_normalize_prints_one_json_object_per_title(tmp_path):
    titles = tmp_path / "titles.txt"
    titles.write_text("Sr. Software Engineer\n\nasdf qwerty\n")
    out = _run("normalize", "RN", "--input", str(titles), "--top-k", "2")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["input"] for r in rows] == ["RN", "Sr. Software Engineer", "asdf qwerty"]
    assert rows[0]["code"] == "29-1141.00" and rows[0]["title"] == "Registered Nurses"
    assert rows[1]["code"] == "15-1252.00" and len(rows[1]["candidates"]) <= 2
    assert rows[2]["code"] is None and "no_match" in rows[2]
    assert set(rows[0]) >= {"input", "code", "title", "score", "candidates"}


def test_normalize_reads_stdin():
    out = _run("normalize", "--input", "-", stdin="CDL Truck Driver\n")
    assert json.loads(out.stdout)["code"] == "53-3032.00"


def test_synth_then_prepare(tmp_path):
    data, run = tmp_path / "p.jsonl", tmp_path / "run"
    out = _run("synth", "--persons", "200", "--seed", "4", "--out", str(data), "--quiet")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["persons"] == 200
    out = _run("prepare", "--input", str(data), "--out", str(run), "--engine", "local", "prepare.seed=2")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["read"] == summary["accepted"] == 200
    assert json.loads((run / "manifest.json").read_text())["stages"]["prepare"]["config"]["seed"] == 2
    assert pl.read_parquet(run / "examples" / "train.parquet").height == summary["splits"]["train"]


def test_errors_are_one_line_and_exit_2(tmp_path):
    out = _run("prepare", "--input", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr
    out = _run("synth", "--persons", "0", "--out", str(tmp_path / "x.jsonl"))
    assert out.returncode == 2 and "persons" in out.stderr
    out = _run("synth", "--persons", "5", "--out", str(tmp_path / "x.jsonl"), "synth.nope=1")
    assert out.returncode == 2 and "nope" in out.stderr
