"""Reason-quality checks that need no judge model: grounding in the history, and a judge without spread."""

import polars as pl

from jobpred.llm.prompts import history_json
from jobpred.reasons.grounding import grounding, judge_spread

HISTORY = history_json(
    [{"degree": "BSc", "field": "Nursing", "institution": "State University", "start": "2006", "end": "2010"}],
    [{"title": "Staff Nurse", "onet_title": "Registered Nurses", "company": "General Hospital", "start": "2010-09",
      "end": "2016-05"},
     {"title": "Charge Nurse", "onet_title": "Registered Nurses", "company": "Mercy Clinic", "start": "2016-06",
      "end": None}])


def test_a_reason_that_names_the_history_is_grounded():
    check = grounding("After a BSc in Nursing at State University she worked at General Hospital from 2010 "
                      "and became a Charge Nurse at Mercy Clinic in 2016.", HISTORY)
    assert check.score == 1.0 and check.checked >= 5 and not check.missing and not check.placeholder


def test_invented_employers_and_dates_are_missing_from_the_history():
    check = grounding("She led the ICU at Acme Medical Center from 2003 after her Nursing degree.", HISTORY)
    assert "2003" in check.missing and any("Acme" in m for m in check.missing)
    assert 0 < check.score < 1  # Nursing is in the history


def test_placeholders_and_reasons_about_someone_else_score_zero():
    for text in ("your reason", "Theo, that's a great idea. What's a fun and challenging job? How about a chef!",
                 "", None):
        check = grounding(text, HISTORY)
        assert check.placeholder and check.score == 0.0, text


def test_a_reason_with_nothing_checkable_is_not_penalised():
    check = grounding("she enjoys nursing and wants more responsibility on the ward", HISTORY)
    assert check.score is None and not check.placeholder


def test_a_judge_that_gives_everyone_five_is_flagged_flat():
    rows = [{"criterion": "utility", "status": "ok", "score": 5} for _ in range(20)]
    rows += [{"criterion": "coherence", "status": "ok", "score": s} for s in (1, 2, 3, 4, 5) * 4]
    rows += [{"criterion": "coherence", "status": "parse_failed", "score": None}]
    spread = judge_spread(pl.DataFrame(rows))
    assert spread["utility"]["flat"] and spread["utility"]["mode_share"] == 1.0
    assert not spread["coherence"]["flat"] and spread["coherence"]["n"] == 20
