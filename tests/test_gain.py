"""The likelihood gain of a reason (reasons/gain.py) around the engine: what is scored, how rows become gains,
and how selection uses them. The engine itself runs in tests/test_reasons_integration.py."""

import polars as pl
import pyarrow as pa
import pytest
from pydantic import ValidationError
from reasonskit import cand_row, reason_frames, score_rows

from jobpred.config import ReasonsConfig
from jobpred.reasons import gain
from jobpred.reasons.select import select
from jobpred.schema import GAINS_SCHEMA


def _cands(rows: list[dict]) -> pl.DataFrame:
    return reason_frames(rows, [])[0]


def test_plan_scores_each_distinct_reason_once_plus_one_baseline_per_example():
    rows = [cand_row("a", 0), {**cand_row("a", 1), "reason": "r"},  # same reason as a/0
            {**cand_row("a", 2), "reason": "other"}, cand_row("b", 0), cand_row("b", 1, ok=False),
            cand_row("done", 0)]
    todo = gain.plan(_cands(rows), done={"done"})
    got = {(r["example_id"], tuple(r["candidate_ids"])): r["group_size"] for r in todo.iter_rows(named=True)}
    assert got == {("a", ()): 3, ("a", ("a/plain/0", "a/plain/1")): 3, ("a", ("a/plain/2",)): 3,
                   ("b", ()): 2, ("b", ("b/plain/0",)): 2}
    baseline = todo.filter(pl.col("candidate_ids").list.len() == 0)
    assert baseline["reason"].null_count() == baseline.height


def _scored(ex, ids, logp, status="ok", problem=None, size=3):
    return {"example_id": ex, "candidate_ids": ids, "prompt_version": "predictor/v1+compact", "status": status,
            "logp": logp, "title_tokens": 4, "problem": problem, "prompt_tokens": 100, "llm_seconds": 0.1,
            "group_key": ex, "group_size": size}


def test_gains_are_differences_to_the_baseline_and_failures_are_errors():
    groups = [[_scored("a", ["a/plain/1", "a/plain/2"], -2.0), _scored("a", [], -5.0),
               _scored("a", ["a/plain/0"], None, "error", "the engine returned no logprob for 1 of 4 title positions")],
              [_scored("b", [], None, "error", "EngineError", size=2), _scored("b", ["b/plain/0"], -1.0, size=2)]]
    tables, done = gain.to_tables(groups, "m")
    assert done == ["a", "b"] and tables["gains"].schema == GAINS_SCHEMA
    rows = {r["candidate_id"]: r for r in tables["gains"].to_pylist()}
    assert set(rows) == {"a/plain/0", "a/plain/1", "a/plain/2", "b/plain/0"}
    assert rows["a/plain/1"]["likelihood_gain"] == pytest.approx(3.0) == rows["a/plain/2"]["likelihood_gain"]
    assert rows["a/plain/0"]["status"] == "error" and rows["a/plain/0"]["likelihood_gain"] is None
    # a failed baseline leaves its example's gains undefined, and says why
    assert rows["b/plain/0"]["status"] == "error" and rows["b/plain/0"]["problem"] == "baseline: EngineError"
    errors = tables["errors"].to_pylist()
    assert {e["candidate_id"] for e in errors} == {"a/plain/0", "b/plain/0"}
    assert {(e["stage"], e["scope"]) for e in errors} == {("gain", "gain")}


def _gains(values: dict[str, float | None]) -> pl.DataFrame:
    rows = [{"example_id": cid.split("/")[0], "candidate_id": cid, "status": "ok" if g is not None else "error",
             "logp_reason": None, "logp_no_reason": None, "likelihood_gain": g} for cid, g in values.items()]
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=GAINS_SCHEMA))


def test_select_by_gain_picks_the_reason_that_helps_and_pairs_in_nats():
    cands = [cand_row("e", 0), cand_row("e", 1), cand_row("e", 2)]
    judgements = score_rows("e/plain/0", 5, 5, 5) + score_rows("e/plain/1", 3, 3, 3) + score_rows("e/plain/2", 4, 4, 4)
    c, j, errors = reason_frames(cands, judgements)
    gains = _gains({"e/plain/0": -0.5, "e/plain/1": 2.0, "e/plain/2": None})
    on = {"likelihood_gain": True, "min_scores": {"factuality": 1, "coherence": 1, "utility": 1}}
    _, oracle, _ = select(["e"], c, j, errors, ReasonsConfig(**on), gains)
    assert oracle["candidate_id"].to_list() == ["e/plain/0"]  # the judge's pick
    assert oracle["likelihood_gain"].to_list() == [pytest.approx(-0.5)]
    _, oracle, dpo = select(["e"], c, j, errors, ReasonsConfig(**on, select_by="likelihood_gain", dpo_margin=2.4), gains)
    assert oracle["candidate_id"].to_list() == ["e/plain/1"]
    # best (2.0) vs worst gain (-0.5); the candidate without a gain is in neither side
    assert dpo.select("chosen_candidate_id", "rejected_candidate_id").rows() == [("e/plain/1", "e/plain/0")]
    assert dpo["margin"].to_list() == [pytest.approx(2.5)]
    assert select(["e"], c, j, errors, ReasonsConfig(**on, select_by="likelihood_gain", dpo_margin=2.5),
                  gains)[2].height == 0
    outcomes, oracle, _ = select(["e"], c, j, errors, ReasonsConfig(**on, min_likelihood_gain=2.5), gains)
    assert oracle.height == 0 and "likelihood gain -0.5 < 2.5" in outcomes["reason"][0]  # best by the judge


def test_gain_settings_need_the_gains():
    with pytest.raises(ValidationError, match=r"needs reasons\.likelihood_gain: true"):
        ReasonsConfig(select_by="likelihood_gain")
    with pytest.raises(ValidationError, match="min_likelihood_gain needs"):
        ReasonsConfig(min_likelihood_gain=0.0)
