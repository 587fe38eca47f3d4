"""The paper's metrics on hand-computed cases, ranking metrics, bootstrap CIs and breakdowns."""

from fractions import Fraction

import numpy as np
import polars as pl
import pytest

from jobpred.eval.metrics import (
    bootstrap_ci,
    breakdowns,
    major_group_errors,
    score_frame,
    summarize,
    to_codes,
)
from jobpred.taxonomy import Taxonomy

RN = "29-1141.00"  # Registered Nurses; its O*NET related list starts 29-1141.04 (Index 1)
RELATED = {1: "29-1141.04", 5: "29-2061.00", 20: "29-1229.02"}  # Index -> code, from O*NET 29.3


def _frame(rows, ranked=None, **extra):
    data = {"target": [r[0] for r in rows], "prediction": [r[1] for r in rows], **extra}
    schema = {"target": pl.String, "prediction": pl.String}
    if ranked is not None:
        data["ranked"] = ranked
        schema["ranked"] = pl.List(pl.String)
    return pl.DataFrame(data, schema_overrides=schema)


def _pct(x: Fraction) -> float:
    return round(float(x * 100), 6)


def test_fixture_codes_are_what_onet_says():
    tax = Taxonomy.load()
    for index, code in RELATED.items():
        assert tax.related_index(RN, code) == index
    assert tax.related("11-9199.00") == []  # "Managers, All Other": no related list


def test_titles_and_codes_are_the_same_prediction():
    values = ["Registered Nurses", RN, "  registered   NURSES ", "REGISTERED\tNURSES", "Registered\u00a0Nurses",
              "29-1141.0", "29-9999.00", "Nurse", "RN", "", "   ", None, "ﬁnancial managers"]
    tax = Taxonomy.load()
    assert to_codes(pl.Series(values)).to_list() == [tax.to_code(v) for v in values]
    assert to_codes(pl.Series(values)).to_list()[:5] == [RN] * 5


def test_accem_accrm_hand_computed():
    tax = Taxonomy.load()
    rows = [
        (RN, "Registered Nurses"),  # exact by title: 1
        ("Registered Nurses", RN),  # exact by code, target given as a title: 1
        (RN, tax.title(RELATED[1])),  # related Index 1: 1/2
        (RN, RELATED[5]),  # related Index 5: 1/6
        (RN, tax.title(RELATED[20]).upper()),  # related Index 20: 1/21
        (RN, "Chief Executives"),  # valid, not related: 0
        (RN, "Nurse"),  # not an O*NET-SOC 2019 title: invalid, 0
        (RN, None),  # missing
        (RN, "  "),  # blank: missing
        ("Managers, All Other", "11-9199.00"),  # no related list, exact: 1
        ("Managers, All Other", "Chief Executives"),  # no related list, not exact: 0
        (RELATED[1], RN),  # related is directional: RN is Index 2 of 29-1141.04's list: 1/3
    ]
    result = summarize(score_frame(_frame(rows)), bootstrap=200)
    n = len(rows)
    assert result["AccEM"] == _pct(Fraction(3, n))
    assert result["AccRM"] == _pct((3 + Fraction(1, 2) + Fraction(1, 6) + Fraction(1, 21) + Fraction(1, 3)) / n)
    assert (result["total"], result["valid"], result["invalid"], result["missing"]) == (12, 9, 1, 2)
    assert "MRR" not in result and "Acc@5" not in result  # nothing ranked


def test_unmappable_targets_are_left_out_and_counted():
    result = summarize(score_frame(_frame([(RN, RN), ("Astronaut", RN), (None, RN)])), bootstrap=0)
    assert result["total"] == 1 and result["invalid_target"] == 2 and result["AccEM"] == 100.0


def test_nothing_to_score_is_not_an_error():
    result = summarize(score_frame(_frame([])), bootstrap=100)
    assert result["total"] == 0 and result["AccEM"] is None and result["ci"] == {}


def test_acc_at_k_and_mrr_over_ranked_lists():
    filler = [c for c, _ in Taxonomy.load().related("11-1011.00")]  # 20 codes, none of them RN
    ranked = [
        [RN] + filler[:9],  # rank 1
        filler[:2] + ["registered nurses"] + filler[2:9],  # rank 3, given as a title
        filler[:6] + [RN],  # rank 7
        filler[:11] + [RN],  # rank 12: outside Acc@10, still in MRR
        ["not a title", None, RN],  # invalid entries keep their positions: rank 3
        filler[:10],  # absent
        [],  # empty
        None,  # no list
    ]
    frame = _frame([(RN, r[0] if r else None) for r in ranked], ranked=ranked)
    result = summarize(score_frame(frame), bootstrap=0)
    n = Fraction(len(ranked))
    assert result["Acc@1"] == _pct(1 / n)
    assert result["Acc@5"] == _pct(3 / n)
    assert result["Acc@10"] == _pct(4 / n)
    assert result["MRR"] == _pct((1 + Fraction(1, 3) + Fraction(1, 7) + Fraction(1, 12) + Fraction(1, 3)) / n)


def test_bootstrap_ci_contains_the_estimate_and_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    small = (rng.random(100) < 0.3).astype(float)
    large = (rng.random(10_000) < 0.3).astype(float)
    lo_s, hi_s = bootstrap_ci(small, 2000, seed=0)
    lo_l, hi_l = bootstrap_ci(large, 2000, seed=0)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # ~1/sqrt(100) as wide
    assert bootstrap_ci(small, 2000, seed=0) == (lo_s, hi_s)  # seeded
    # The histogram resampling is row resampling: compare with the textbook version.
    idx = rng.integers(0, 100, size=(4000, 100))
    naive = np.quantile(small[idx].mean(1), [0.025, 0.975])
    assert abs(naive[0] - lo_s) < 0.02 and abs(naive[1] - hi_s) < 0.02
    assert bootstrap_ci(np.zeros(50), 500) == (0.0, 0.0)


def test_summary_cis_bracket_every_metric():
    rows = [(RN, RN)] * 30 + [(RN, RELATED[1])] * 30 + [(RN, "Chief Executives")] * 40
    ranked = [[RN]] * 50 + [["11-1011.00", RN]] * 30 + [["11-1011.00"]] * 20
    result = summarize(score_frame(_frame(rows, ranked=ranked)), bootstrap=1000, seed=3)
    for metric, (lo, hi) in result["ci"].items():
        assert lo <= result[metric] <= hi, metric
        assert hi - lo > 0
    assert set(result["ci"]) == {"AccEM", "AccRM", "Acc@1", "Acc@5", "Acc@10", "MRR"}


def test_breakdowns_partition_the_examples():
    rows = [(RN, RN), (RN, "Chief Executives"), ("11-9199.00", None), ("15-1252.00", "15-1252.00"),
            ("15-1252.00", "Nurse")]
    frame = _frame(rows, history_len=[1, 2, 4, 12, None], last_code=[RN, "15-1252.00", None, RN, "15-1253.00"])
    scored = score_frame(frame)
    total = summarize(scored, bootstrap=0)["total"]
    parts = breakdowns(scored)
    assert set(parts) == {"job_zone", "history_length", "major_group_change"}
    for name, groups in parts.items():
        assert sum(g["n"] for g in groups) == total, name
    hist = {g["group"]: g["n"] for g in parts["history_length"]}
    assert hist == {"1": 1, "2": 1, "3-4": 1, "10+": 1, "unknown": 1}
    assert [g["group"] for g in parts["history_length"]] == ["1", "2", "3-4", "10+", "unknown"]
    change = {g["group"]: (g["n"], g["AccEM"]) for g in parts["major_group_change"]}
    # same: RN after RN (hit), 15-1252.00 after 15-1253.00 (invalid); changed: RN after 15-1252.00
    # (miss), 15-1252.00 after RN (hit); unknown: no last code.
    assert change == {"same": (2, 50.0), "changed": (2, 50.0), "unknown": (1, 0.0)}
    zones = {g["group"]: g["n"] for g in parts["job_zone"]}
    assert zones == {"4": 4, "unknown": 1}  # 11-9199.00 has no Job Zone


def test_major_group_errors_count_cross_group_mistakes():
    rows = ([(RN, "Chief Executives")] * 3 + [(RN, "11-2021.00")] + [(RN, RELATED[1])] * 2
            + [("15-1252.00", "Registered Nurses")] + [(RN, "Nurse")])
    errors = major_group_errors(score_frame(_frame(rows)))
    assert errors[0] == {"target_group": "29", "predicted_group": "11", "n": 4, "share": 0.8}
    assert errors[1]["target_group"] == "15" and errors[1]["n"] == 1
    assert len(errors) == 2  # same-group mistakes and invalid predictions are not major-group errors


@pytest.mark.parametrize("n", [1_000, 200_000])
def test_scoring_is_vectorised(n):
    import time

    codes = Taxonomy.load().data_level_codes
    rng = np.random.default_rng(0)
    target = np.array(codes)[rng.integers(0, len(codes), n)]
    pred = np.array(codes)[rng.integers(0, len(codes), n)]
    frame = pl.DataFrame({"target": target, "prediction": pred,
                          "ranked": pl.Series([[c] * 10 for c in pred[:n]], dtype=pl.List(pl.String))})
    started = time.perf_counter()
    summarize(score_frame(frame), bootstrap=1000)
    assert time.perf_counter() - started < 10  # a Python loop over rows would take far longer at 200k
