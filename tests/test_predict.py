"""Unit tests of the prediction core: steps and prompts, parsing, answer ranking, planning, paired claims."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from jobpred.config import load_config
from jobpred.eval.claims import paired_diff, verdict
from jobpred.llm.prompts import history_json
from jobpred.predict.answers import AnswerRanker
from jobpred.predict.batch import execution_groups, plan_predictors, trained_adapters
from jobpred.predict.records import resolve_history
from jobpred.predict.steps import PREDICTORS, Step, parse_step, predictor_steps, step_messages, step_regex
from jobpred.rundir import RunDir
from jobpred.schema import CareerRecord
from jobpred.taxonomy import Taxonomy, TitleNormalizer
from jobpred.train.formats import build_messages

NURSE = "29-1141.00"
HISTORY = history_json([{"degree": "BSc", "field": "Nursing"}],
                       [{"title": "Staff nurse", "onet_title": "Registered Nurses", "start": "2015-01", "end": None}])


@pytest.fixture(scope="module")
def ranker():
    return AnswerRanker(top_k=10)


def test_exact_title_and_code_map_to_the_same_first_choice(ranker):
    by_title = ranker.rank("Registered Nurses", [])
    by_code = ranker.rank(NURSE, [])
    assert by_title.codes[0] == by_code.codes[0] == NURSE and by_title.method == "exact"
    assert by_title.titles[0] == "Registered Nurses" and by_title.scores[0] == 1.0


def test_ranked_list_is_first_choice_then_its_related_occupations(ranker):
    tax = Taxonomy.load()
    ranked = ranker.rank("Registered Nurses", [])
    related = [c for c, _ in tax.related(NURSE)]
    assert ranked.codes[1:1 + min(9, len(related))] == related[:9]
    assert len(ranked.codes) == 10 and len(set(ranked.codes)) == 10
    assert ranked.scores == sorted(ranked.scores, reverse=True)


def test_alternate_titles_go_through_the_normaliser(ranker):
    ranked = ranker.rank("staff RN", [])
    assert ranked.codes[0] == NURSE and ranked.method == "normalised"


def test_unmappable_answer_falls_back_to_the_last_known_occupation(ranker):
    ranked = ranker.rank("I think they will be happy", ["11-1021.00", None, "43-4051.00"])
    assert ranked.codes[0] == "43-4051.00" and ranked.method == "history"
    longer = AnswerRanker(top_k=100).rank("I think they will be happy", ["11-1021.00", None, "43-4051.00"])
    assert "11-1021.00" in longer.codes[1:]  # the earlier history fills the list after the related ones


@pytest.mark.parametrize("answer", [None, "", "   ", "zzzz qqqq"])
def test_answer_is_always_a_valid_code(ranker, answer):
    tax = Taxonomy.load()
    ranked = ranker.rank(answer, [])
    assert ranked.method == "prior" and ranked.codes and all(c in tax for c in ranked.codes)


def test_fine_tuned_steps_prompt_exactly_as_in_training():
    assert step_messages(Step("joint", "joint"), HISTORY) == build_messages("joint", HISTORY)
    assert step_messages(Step("reason", "reasoner"), HISTORY) == build_messages("reasoner", HISTORY)
    assert step_messages(Step("predict", "predictor"), HISTORY, "r") == build_messages("predictor", HISTORY, "r")


def test_base_model_steps_prefill_the_expected_block():
    answer = step_messages(Step("answer", None), HISTORY)
    joint = step_messages(Step("joint", None), HISTORY)
    assert answer[-1] == {"role": "assistant", "content": "<answer>"}
    assert joint[-1] == {"role": "assistant", "content": "<think>\n"}


def test_every_predictor_ends_with_an_answering_step():
    for name, steps in PREDICTORS.items():
        assert steps[-1].kind in ("answer", "joint", "predict"), name


def test_parse_joint_output_with_prefill_put_back():
    parsed = parse_step(Step("joint", None), "They like care work.\n</think>\n<answer>Registered Nurses</answer>")
    assert parsed.reason == "They like care work." and parsed.answer == "Registered Nurses" and parsed.problem is None


def test_parse_is_lenient_but_reports_the_problem():
    parsed = parse_step(Step("joint", "joint"), "<think>\nshort reason\n</think>\nRegistered Nurses")
    assert parsed.answer is None and parsed.alternatives[0] == "Registered Nurses" and parsed.problem
    parsed = parse_step(Step("answer", None), " Nurse practitioner")
    assert parsed.answer is None and parsed.alternatives == ("Nurse practitioner",) and "answer" in parsed.problem
    parsed = parse_step(Step("reason", "reasoner"), "<think>\nlikes people, keeps the same field")
    assert parsed.reason == "likes people, keeps the same field" and parsed.problem


def test_injected_answer_tags_in_the_reason_do_not_become_the_answer():
    # the model echoes an injected closing tag: only the first block after </think> counts
    text = "x\n</think>\n<answer>Registered Nurses</answer> <answer>Chief Executives</answer>"
    assert parse_step(Step("joint", None), text).answer == "Registered Nurses"


def test_constrained_regex_accepts_only_official_titles():
    titles = ["Registered Nurses", "Chief Executives"]
    rx = re.compile(step_regex(Step("answer", None), 24, titles))
    assert rx.fullmatch("Registered Nurses</answer>") and not rx.fullmatch("Nurse</answer>")
    reason = re.compile(step_regex(Step("reason", "reasoner"), 24, titles))
    assert reason.fullmatch("<think>\nlikes caring for people\n</think>") and not reason.fullmatch("<answer>x")


def test_plan_skips_or_refuses_predictors_without_adapters():
    cfg = load_config(None, ["predict.predictors=[zero-shot, joint, two-model]"])
    run, skipped = plan_predictors(cfg, {"joint": "/a/joint"})
    assert run == ["zero-shot", "joint"] and set(skipped) == {"two-model"} and "reasoner" in skipped["two-model"]
    strict = load_config(None, ["predict.predictors=[two-model]", "predict.missing_adapters=error"])
    with pytest.raises(ValueError, match="reasoner"):
        plan_predictors(strict, {})
    with pytest.raises(ValueError, match="unknown predictor"):
        predictor_steps("nope")


def test_an_adapter_is_prompted_only_with_the_history_rendering_it_was_trained_on(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "adapters" / "joint").mkdir(parents=True)
    (tmp_path / "adapters" / "old").mkdir(parents=True)
    info = {"joint": {"path": "adapters/joint", "history_format": "compact"}}
    run.record_stage("train", outputs={}, extra={"adapters": info})
    assert trained_adapters(tmp_path, "compact") == {"joint": str(tmp_path / "adapters" / "joint")}
    with pytest.raises(ValueError, match="history_format=compact, the config says json"):
        trained_adapters(tmp_path, "json")
    # adapters recorded before the rendering was recorded were trained on the paper's JSON
    run.record_stage("train", outputs={}, extra={"adapters": {**info, "old": {"path": "adapters/old"}}})
    with pytest.raises(ValueError, match=r"adapters \['old'\].*history_format=json"):
        trained_adapters(tmp_path, "compact")


def test_base_model_predictors_run_apart_from_adapter_ones_when_configured():
    names = ["joint", "zero-shot", "two-model", "zero-shot-reason"]
    together = load_config(None, ["predict.base_apart_from_adapters=false"])
    assert execution_groups(together, names) == [names]
    apart = load_config(None, ["predict.base_apart_from_adapters=true"])
    assert execution_groups(apart, names) == [["zero-shot", "zero-shot-reason"], ["joint", "two-model"]]
    assert execution_groups(apart, ["joint"]) == [["joint"]]  # no empty execution
    assert load_config(Path(__file__).resolve().parents[1] / "configs" / "local.yaml").predict.base_apart_from_adapters  # the CPU default


def test_record_history_is_sorted_and_resolved():
    record = CareerRecord.model_validate({"person_id": "p", "experience": [
        {"title": "Registered Nurse", "start": "2018-01"},
        {"title": "Nursing assistant", "start": "2012-01", "end": "2017-12"},
        {"title": "Zzqx blorp", "start": "2010-01", "end": "2011-12", "onet_code": "43-4051.00"}]})
    jobs = resolve_history(record, TitleNormalizer(), Taxonomy.load())
    assert [j["start"] for j in jobs] == ["2010-01", "2012-01", "2018-01"]
    assert jobs[0]["onet_code"] == "43-4051.00" and jobs[-1]["onet_code"] == NURSE


def test_paired_difference_and_verdict():
    a = pl.DataFrame({"example_id": ["1", "2", "3", "4"], "em": [1, 1, 1, 0], "rm": [1.0, 1.0, 1.0, 0.5]})
    b = pl.DataFrame({"example_id": ["1", "2", "3", "4"], "em": [0, 0, 0, 0], "rm": [0.0, 0.0, 0.0, 0.5]})
    d = paired_diff(a, b, samples=200)
    assert d["n"] == 4 and d["em"] == pytest.approx(75.0) and d["rm"] == pytest.approx(75.0)
    assert d["rm_ci"][0] >= 0 and verdict(d) in ("reproduced", "not distinguishable")
    same = paired_diff(a, a, samples=50)
    assert same["em"] == 0 and verdict(same) == "not distinguishable"
    assert verdict(paired_diff(b, a, samples=200)) in ("reversed", "not distinguishable")


def test_free_text_outputs_offer_phrases_that_the_ranker_maps(ranker):
    parsed = parse_step(Step("predict", "predictor"),
                        'The most likely next occupation is a professional in the field of "Pipe Caulker"')
    assert parsed.answer is None and parsed.alternatives[0] == "Pipe Caulker"
    ranked = ranker.rank(parsed.answer, ["43-4051.00"], parsed.alternatives)
    # "Pipe Caulker" is an O*NET alternate title of Pipelayers
    assert ranked.method == "normalised_phrase" and ranked.titles[0] == "Pipelayers"
    parsed = parse_step(Step("joint", "joint"), "Their history points to a move, so they will become a registered nurse.")
    assert parsed.reason and "registered nurse" in parsed.alternatives
    assert ranker.rank(None, [], parsed.alternatives).codes[0] == NURSE


def test_unclosed_reason_block_still_yields_the_reason():
    parsed = parse_step(Step("joint", None), "They moved from care work to teaching and back")
    assert parsed.reason == "They moved from care work to teaching and back" and parsed.problem


def test_report_says_where_llm_answers_came_from(tmp_path):
    from jobpred.eval.claims import _methods_section

    pl.DataFrame({"example_id": ["1", "2", "3", "4"], "answer_method": ["history", "nearest", "exact", "history"]}
                 ).write_parquet(tmp_path / "joint.parquet")
    pl.DataFrame({"example_id": ["1"], "predicted_code": ["29-1141.00"]}).write_parquet(tmp_path / "markov.parquet")
    lines = _methods_section({"joint": tmp_path / "joint.parquet", "markov": tmp_path / "markov.parquet"})
    row = next(" ".join(ln.split()) for ln in lines if ln.startswith("| joint "))  # cells are padded
    assert "| 4 | 50% |" in row and "history 2" in row and not any(ln.startswith("| markov") for ln in lines)


def test_merged_adapters_run_one_execution_per_chain_of_models():
    names = ["joint", "zero-shot", "two-model", "zero-shot-reason", "predictor-no-reason", "two-model-dpo"]
    merged = load_config(None, ["predict.adapters=merged"])
    assert execution_groups(merged, names) == [["joint"], ["zero-shot", "zero-shot-reason"], ["two-model"],
                                               ["predictor-no-reason"], ["two-model-dpo"]]


def test_a_merged_adapter_is_the_adapter_folded_into_the_weights(tmp_path):
    """merge_and_unload's copy gives the next-token choices the adapter gives (bf16 weights, greedy), and is
    built once: a second call with the same adapter reuses it, a changed adapter rebuilds it."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jobpred.models import resolve_model
    from jobpred.predict.merged import MARKER, merged_model

    base_path = resolve_model("smollm2-135m-instruct")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)  # a trained adapter is not the identity
    adapter = tmp_path / "adapters" / "joint"
    model.save_pretrained(adapter)
    out = merged_model(base_path, adapter, tmp_path / "merged")
    assert merged_model(base_path, adapter, tmp_path / "merged") == out and (Path(out) / MARKER).exists()
    tok = AutoTokenizer.from_pretrained(base_path)
    ids = tok("The nurse became a", return_tensors="pt").input_ids
    lora = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.bfloat16), adapter)
    folded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    with torch.no_grad():
        a = lora.generate(ids, max_new_tokens=8, do_sample=False)
        b = folded.generate(ids, max_new_tokens=8, do_sample=False)
    assert a.tolist() == b.tolist()
    stamp = (Path(out) / MARKER).stat().st_mtime_ns
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n).add_(0.01)
    model.save_pretrained(adapter)
    merged_model(base_path, adapter, tmp_path / "merged")
    assert (Path(out) / MARKER).stat().st_mtime_ns != stamp  # rebuilt for the changed adapter


def test_judged_reasons_of_other_examples_are_not_related_to_accuracy(tmp_path):
    from jobpred.eval.claims import _quality_vs_accuracy
    from jobpred.predict.judged import JUDGEMENTS_FILE
    from jobpred.rundir import RunDir

    run = RunDir(tmp_path / "r")
    (run.path / "predict").mkdir(parents=True)
    # judgements of the test split's reasons, then predictions of the val split (no example in common)
    pl.DataFrame({"predictor": ["joint"], "example_id": ["test-1"], "criterion": ["utility"], "score": [5],
                  "status": ["ok"]}).write_parquet(run.path / JUDGEMENTS_FILE)
    preds = run.path / "joint.parquet"
    pl.DataFrame({"example_id": ["val-1"], "target_code": ["29-1141.00"], "predicted_code": ["29-1141.00"],
                  "ranked_codes": [["29-1141.00"]], "answer_method": ["exact"]}).write_parquet(preds)
    table, plots = _quality_vs_accuracy(run, {"joint": preds}, tmp_path)
    assert table.height == 0 and plots == []


def test_an_evaluation_leaves_no_table_of_a_predictor_it_did_not_run(tmp_path):
    from jobpred.predict.batch import remove_other_tables

    for name in ("joint", "predictor-no-reason", "markov"):
        (tmp_path / f"{name}.parquet").write_bytes(b"x")
    remove_other_tables(tmp_path, ["joint", "two-model"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["joint.parquet", "markov.parquet"]  # baselines stay


def test_the_report_says_when_the_judge_scores_carry_no_signal(tmp_path):
    from jobpred.eval.claims import _reason_quality_section
    from jobpred.rundir import RunDir

    run = RunDir(tmp_path / "r")
    assert _reason_quality_section(run) == []  # no reasons stage: nothing to say
    spread = {"utility": {"n": 48, "mean": 5.0, "std": 0.0, "mode_share": 1.0, "flat": True},
              "coherence": {"n": 48, "mean": 3.1, "std": 1.2, "mode_share": 0.4, "flat": False}}
    run.record_stage("reasons", outputs={}, counts={"judge_spread": spread, "oracle_grounding_mean": 0.72})
    lines = [" ".join(ln.split()) for ln in _reason_quality_section(run)]
    assert any(ln.startswith("| utility | 48 | 5.00 | 0.00 | 100% | no signal |") for ln in lines)
    assert any(ln.startswith("| coherence | 48 |") and "varies" in ln for ln in lines) and "0.72" in " ".join(lines)
    assert not any("Likelihood gain" in ln for ln in lines)  # not computed: not mentioned
    gain = {"n": 40, "mean": 0.25, "sd": 1.5, "positive_share": 0.55, "mean_if_answer_correct": 2.0,
            "mean_if_answer_wrong": None}
    run.record_stage("reasons", outputs={}, counts={"judge_spread": spread, "likelihood_gain": gain})
    text = " ".join(_reason_quality_section(run))
    assert "40 candidates" in text and "mean +0.25, std 1.50, 55% positive" in text
    assert "mean +2.00 where the candidate's own answer was the true occupation, - where it was not" in text


def _swap_batch(n_examples: int, fail: set[int] = frozenset()):
    """BuildRequests -> a scripted step 1 (a reason naming its example) -> ChainStep, for two-model and its
    reason-swap arm on ``n_examples`` examples; ``fail``: examples whose step 1 errs."""
    import pyarrow as pa

    from jobpred.predict.batch import BuildRequests, ChainStep
    from jobpred.predict.records import resolve_history

    cfg = load_config(None, ["predict.predictors=[two-model, two-model-swapped]", "predict.answer_mode=free"])
    norm, tax = TitleNormalizer(), Taxonomy.load()
    examples = []
    for i in range(n_examples):
        rec = CareerRecord.model_validate({"person_id": f"p{i}", "experience": [
            {"title": "Nursing assistant", "start": "2012-01", "end": "2017-12"},
            {"title": "Registered Nurse", "start": "2018-01"}]})
        examples.append({"example_id": f"e{i}", "education": [], "history": resolve_history(rec, norm, tax)})
    kwargs = {"cfg": cfg, "names": cfg.predict.predictors, "adapter_paths": {"reasoner": "r", "predictor": "p"}}
    table = BuildRequests(**kwargs)(pa.Table.from_pylist(examples))
    ids = table["example_id"].to_pylist()
    n = table.num_rows
    step1 = (table.drop_columns(["messages", "sampling"])
             .append_column("generated_text", pa.array([f"<think>\nreason of {e}\n</think>" for e in ids]))
             .append_column("prompt_tokens", pa.array([7] * n, pa.int32()))
             .append_column("generated_tokens", pa.array([5] * n, pa.int32()))
             .append_column("llm_seconds", pa.array([0.0] * n))
             .append_column("llm_error", pa.array(["boom" if int(e[1:]) in fail else None for e in ids],
                                                  pa.string())))
    return table, ChainStep(**kwargs)(step1).to_pylist()


def test_the_reason_swap_gives_each_person_another_persons_reason():
    requests, rows = _swap_batch(3)
    assert set(requests["predictor"].to_pylist()) == {"two-model"}  # no reasoner pass of its own
    swapped = {r["example_id"]: r for r in rows if r["predictor"] == "two-model-swapped"}
    assert sorted(swapped) == ["e0", "e1", "e2"]
    given = {e: r["s1_generated_text"] for e, r in swapped.items()}
    assert all(f"reason of {e}" not in text for e, text in given.items())  # never the person's own
    assert sorted(given.values()) == sorted(f"<think>\nreason of e{i}\n</think>" for i in range(3))  # each once
    for e, r in swapped.items():  # step 2 reads the other person's reason with this person's history
        prompt = json.dumps(r["messages"])
        assert given[e].split("\n")[1] in prompt and r["s1_generated_tokens"] == 0 and r["error"] is None
    assert len([r for r in rows if r["predictor"] == "two-model"]) == 3


def test_the_reason_swap_says_when_no_other_persons_reason_exists():
    _, rows = _swap_batch(2, fail={1})
    swapped = {r["example_id"]: r for r in rows if r["predictor"] == "two-model-swapped"}
    assert "no other person's reason" in swapped["e0"]["error"]  # e1's reason failed: nobody to swap with
    assert swapped["e1"]["error"] is None and swapped["e1"]["s1_llm_error"] == "boom"  # its own failure kept
    assert all(json.loads(r["sampling"])["max_tokens"] == 1 for r in swapped.values())  # no-op step 2


def test_a_reason_swap_arm_needs_its_source_predictor_and_generation():
    with pytest.raises(ValueError, match="two-model"):
        load_config(None, ["predict.predictors=[joint, two-model-swapped]"])
    with pytest.raises(ValueError, match="ranked"):
        load_config(None, ["predict.predictors=[two-model, two-model-swapped]", "predict.answer_mode=ranked",
                           "predict.adapters=merged"])
