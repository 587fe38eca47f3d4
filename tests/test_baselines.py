"""Baselines: the predictions contract, each predictor's behaviour, and the ordering a researcher expects."""

import json
import subprocess
import sys

import polars as pl
import pyarrow.parquet as pq
import pytest
from evalkit import baseline_run

from jobpred.config import BASELINES, BaselinesConfig, SequenceModelConfig
from jobpred.eval.markov import MarkovModel, transition_pairs
from jobpred.eval.score import score_file
from jobpred.schema import PREDICTIONS_SCHEMA
from jobpred.taxonomy import Taxonomy

RN, CNS, RT = "29-1141.00", "29-1141.04", "29-1171.00"  # RN's related Index 1 and 2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return baseline_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def scores(run):
    return {name: score_file(run / "predictions" / f"{name}.parquet", bootstrap=1000) for name in BASELINES}


def _examples(histories, targets):
    job = pl.Struct({"onet_code": pl.String})
    return pl.DataFrame(
        {"history": [[{"onet_code": c} for c in h] for h in histories], "target_code": targets},
        schema={"history": pl.List(job), "target_code": pl.String},
    )


# ---- the contract ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BASELINES)
def test_predictions_table_has_the_schema_and_one_row_per_test_example(run, name):
    table = pq.read_table(run / "predictions" / f"{name}.parquet")
    assert table.schema.names == PREDICTIONS_SCHEMA.names
    assert table.schema.equals(PREDICTIONS_SCHEMA)
    pred = pl.from_arrow(table)
    test = pl.read_parquet(run / "examples" / "test.parquet")
    assert pred["example_id"].to_list() == test["example_id"].to_list()
    assert pred["target_code"].to_list() == test["target_code"].to_list()
    assert (pred["history_len"] == test["history"].list.len()).all()
    ranked = pred["ranked_codes"]
    assert ranked.list.len().max() <= 10
    assert (ranked.list.len() == ranked.list.unique().list.len()).all()  # no repeats
    assert (pred["predicted_code"].fill_null("") == ranked.list.first().fill_null("")).all()
    valid = set(Taxonomy.load().occupations)
    assert set(ranked.explode().drop_nulls()) <= valid


def test_the_stage_is_in_the_manifest(run):
    stage = json.loads((run / "manifest.json").read_text())["stages"]["baselines"]
    assert set(stage["outputs"]) == set(BASELINES)
    assert stage["config"]["predictors"] == list(BASELINES)
    assert stage["counts"]["gru_seconds"] < 60  # the GRU trains in-process on a CPU, well under a minute


# ---- the ordering --------------------------------------------------------------------------------------


def test_markov_is_above_popularity_beyond_the_confidence_intervals(scores):
    markov, popular = scores["markov"], scores["popular"]
    for metric in ("AccEM", "AccRM", "Acc@5", "MRR"):
        assert markov["ci"][metric][0] > popular["ci"][metric][1], metric


def test_supervised_gru_beats_popularity(scores):
    gru, popular = scores["gru"], scores["popular"]
    assert gru["ci"]["AccEM"][0] > popular["ci"]["AccEM"][1]
    assert gru["AccRM"] > 3 * popular["AccRM"] and gru["Acc@10"] > popular["Acc@10"]


def test_markov_ranks_better_than_staying(scores):
    # Staying is a strong top-1 on these careers; only the Markov ranking knows where people go next.
    assert scores["markov"]["Acc@5"] > scores["stay"]["Acc@5"] + 10


# ---- each predictor's behaviour ------------------------------------------------------------------------


def test_stay_predicts_the_last_known_occupation(run):
    pred = pl.read_parquet(run / "predictions" / "stay.parquet")
    known = pred.filter(pl.col("last_code").is_not_null())
    assert known.height > 0 and (known["predicted_code"] == known["last_code"]).all()


def test_popular_is_the_train_split_s_most_frequent_targets(run):
    pred = pl.read_parquet(run / "predictions" / "popular.parquet")
    train = pl.read_parquet(run / "examples" / "train.parquet")
    top = train["target_code"].value_counts(sort=True)
    assert pred["ranked_codes"].list.first().n_unique() == 1
    assert pred["predicted_code"][0] == top["target_code"][0]


def test_transition_pairs_follow_consecutive_known_jobs():
    examples = _examples([[RN], [RN, None, CNS]], [CNS, RT])
    pairs = transition_pairs(examples.lazy()).collect().rows()
    assert sorted(pairs) == sorted([(RN, CNS), (CNS, RT)])  # the unknown job breaks RN -> ? -> CNS


def test_markov_counts_win_and_the_onet_prior_covers_unseen_states():
    examples = _examples([[RN], [RN], [RN]], [CNS, CNS, RT])
    counts_only = MarkovModel.fit(examples, alpha=0.0)
    assert counts_only.rank(pl.Series([RN]), 10)[0].to_list()[:2] == [CNS, RT]
    model = MarkovModel.fit(examples, alpha=10.0)
    unseen = "11-1011.00"  # Chief Executives: never seen in train
    ranked = model.rank(pl.Series([unseen, None, RN]), 10).to_list()
    tax = Taxonomy.load()
    onet = {c for c, _ in tax.related(unseen)} | {c for c, _ in tax.career_changers(unseen)}
    assert len(ranked[0]) == 10 and set(ranked[0]) <= onet | {unseen, CNS, RT}
    assert ranked[0][0] in {tax.related(unseen)[0][0], tax.career_changers(unseen)[0][0]}
    assert ranked[1] == [CNS, RT]  # no last code: the most popular targets
    assert ranked[2][0] == CNS and RT in ranked[2]  # 3 observations against 10 pseudo-counts of prior


def test_gru_features_read_degrees_and_tenure():
    from jobpred.eval import seqmodel

    edu = pl.Struct({k: pl.String for k in ("degree", "field", "institution", "start", "end")})
    job = pl.Struct({"onet_code": pl.String, "start": pl.String, "end": pl.String})
    degrees = [["High School Diploma"], ["Vocational Diploma", "BSc"], ["MBA"], ["PhD"], ["AA"], []]
    frame = pl.DataFrame({
        "education": [[{"degree": d} for d in ds] for ds in degrees],
        "history": [[{"onet_code": RN, "start": "2010-01", "end": "2012-01"}]] * len(degrees),
        "target_code": [CNS] * len(degrees), "target_start": ["2013-01"] * len(degrees),
    }, schema_overrides={"education": pl.List(edu), "history": pl.List(job)})
    inputs = seqmodel.eval_inputs(frame, max_history=4)
    assert inputs["edu"].tolist() == [2, 6, 8, 11, 5, 0]
    assert inputs["lengths"].tolist() == [1] * len(degrees)
    assert inputs["zone"][0, 0] == Taxonomy.load().job_zone(RN)
    assert 0 < inputs["tenure"][0, 0] < 1  # 24 months on a 20-year log scale
    train_inputs, labels = seqmodel.train_examples(frame, max_history=4)
    assert len(labels) == len(degrees)  # one transition per person: RN -> CNS
    assert (train_inputs["ci"][:, 0] >= 2).all()


def test_importing_the_eval_package_stays_light():
    code = ("import jobpred.eval, jobpred.eval.baselines, jobpred.eval.report, jobpred.eval.score, sys; "
            "print(' '.join(sys.modules))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not {"torch", "matplotlib", "ray"} & loaded


@pytest.mark.slow
def test_gru_trains_with_ray_train(run, tmp_path, ray_session):
    from jobpred.eval import baselines

    cfg = BaselinesConfig(use_ray_train=True, ray_train_workers=2, gru=SequenceModelConfig(epochs=2))
    train = pl.read_parquet(run / "examples" / "train.parquet")
    test = pl.read_parquet(run / "examples" / "test.parquet")
    ranked = baselines.predict_gru(train, test, cfg)
    assert len(ranked) == test.height and (ranked.list.len() == 10).all()
    hits = (ranked.list.first() == test["target_code"]).mean()
    assert hits > 0.05  # far above popularity (~1%) after two epochs
