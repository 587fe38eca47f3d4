"""Unit tests of the 'ranked' answer mode: candidates, scored prompts, cache-served positions, ranking."""

from __future__ import annotations

import math

import pytest

from jobpred.config import JobpredConfig
from jobpred.llm.budget import TokenCounter
from jobpred.llm.engine import title_logprob
from jobpred.llm.prompts import history_json
from jobpred.predict.answers import AnswerRanker
from jobpred.predict.batch import engine_config
from jobpred.predict.likelihood import (
    LIKELIHOOD_METHOD,
    candidate_codes,
    rank_by_likelihood,
    recover_shared_positions,
)
from jobpred.predict.predictor import Predictor
from jobpred.predict.steps import (
    PREDICTORS,
    generation_steps,
    predictor_steps,
    score_messages,
    stage_adapters,
)

NURSE, LPN, NP = "29-1141.00", "29-2061.00", "29-1171.00"
HISTORY = history_json(None, [{"title": "LPN", "onet_title": "Licensed Practical and Licensed Vocational Nurses",
                               "start": "2012-01", "end": "2015-01"},
                              {"title": "Staff nurse", "onet_title": "Registered Nurses", "start": "2015-01",
                               "end": None}])


@pytest.fixture(scope="module")
def ranker():
    return AnswerRanker(top_k=5)


def _cfg(**predict) -> JobpredConfig:
    return JobpredConfig(predict={"answer_mode": "ranked", "adapters": "merged", "max_tokens": 64, "answer_max_tokens": 16,
                                  "engine": {"max_model_len": 1024}, **predict})


def test_candidates_start_with_the_generated_answer_and_the_history_then_its_neighbours(ranker):
    tax = ranker.taxonomy
    codes = candidate_codes(tax, [LPN, None, NURSE], NP, k=20)
    assert codes[:3] == [NP, NURSE, LPN]  # the generated answer, then the history, most recent first
    assert len(codes) == len(set(codes)) == 20 and all(c in tax for c in codes)
    related = [c for c, _ in tax.related(NURSE) if c not in (NP, LPN)]  # the last job's, deduplicated
    assert codes[3:3 + len(related)] == related[:17]
    # no generated answer, an unknown code: the history alone
    assert candidate_codes(tax, ["99-9999.99", NURSE], None, k=3)[0] == NURSE
    assert candidate_codes(tax, [], None, k=5) == []


def test_cache_served_positions_are_filled_from_a_candidate_that_computed_them():
    # "Registered Nurses" / "Registered Nurses, All Other" share their first two tokens [5, 6]; the engine
    # computed them for the first candidate only, and position 0 for neither of the others' uniques
    ids = [[5, 6, 9], [5, 6, 7, 9], [8, 9]]
    lps = [[-1.0, -0.5, -0.1], [None, None, -2.0, -0.2], [None, -0.3]]
    filled = recover_shared_positions(ids, lps)
    assert filled[0] == [-1.0, -0.5, -0.1] and filled[1] == [-1.0, -0.5, -2.0, -0.2]
    assert filled[2] == [None, -0.3]  # nobody computed token 8 after the prefix: unknown, not guessed
    assert title_logprob(filled[1]) == pytest.approx(-3.7) and title_logprob(filled[2]) is None


def test_ranking_is_by_likelihood_with_probabilities_over_the_candidates(ranker):
    ranked = rank_by_likelihood(ranker.taxonomy, {NURSE: -2.0, LPN: -1.0, NP: None, "29-1228.00": -5.0}, top_k=2)
    assert ranked.codes == [LPN, NURSE] and ranked.method == LIKELIHOOD_METHOD
    total = 1 + math.exp(-1) + math.exp(-4)
    assert ranked.scores == [round(1 / total, 4), round(math.exp(-1) / total, 4)]
    assert rank_by_likelihood(ranker.taxonomy, {NURSE: None}, top_k=2) is None


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_a_scored_prompt_is_the_step_prompt_then_its_answer_block_and_the_title_comes_last(name):
    """The title's tokens are exactly those after the prefix's: what the engine scores is the title."""
    cfg = _cfg()
    count = TokenCounter(engine_config(cfg))
    step = predictor_steps(name)[-1]
    title = "Nurse Practitioners"
    whole, prefix = score_messages(step, HISTORY, "She moved up.", title)
    tok = count.tokenizer
    ids = tok.apply_chat_template(whole, tokenize=True, continue_final_message=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    start = count(prefix)
    assert tok.decode(ids[start:]) == title + "</answer>"
    assert whole[-1]["role"] == "assistant" and whole[-1]["content"].endswith(f"<answer>{title}</answer>")
    if step.kind == "joint":
        assert "She moved up." in whole[-1]["content"]


def test_ranked_mode_generates_only_reasons_and_scores_the_last_step():
    assert generation_steps("zero-shot", "ranked") == () and generation_steps("predictor-no-reason", "ranked") == ()
    assert [s.kind for s in generation_steps("two-model", "ranked")] == ["reason"]
    assert [s.kind for s in generation_steps("joint", "ranked")] == ["joint"]
    assert stage_adapters("two-model", "ranked") == ("reasoner", "predictor")
    assert stage_adapters("joint", "ranked") == ("joint", "joint")
    assert stage_adapters("zero-shot", "ranked") == (None,)
    assert stage_adapters("two-model", "free") == ("reasoner", "predictor")


def test_a_ranked_predictor_scores_after_its_own_reason_and_ranks_by_the_scores(ranker):
    cfg = _cfg(rank_candidates=6)
    count = TokenCounter(engine_config(cfg))
    p = Predictor("joint", cfg.predict, ranker, count, count.context)
    jobs = [{"title": "Staff nurse", "onet_code": NURSE, "onet_title": "Registered Nurses", "start": "2015-01",
             "end": None}]
    state = p.start(None, jobs)
    req = p.request(state)
    assert req.adapter == "joint"
    state = state.add("<think>\nShe wants to prescribe.\n</think>\n<answer>Nurse Practitioners</answer>")
    assert p.request(state) is None  # nothing else is generated
    requests = p.score_requests(state)
    assert [r.code for r in requests][:2] == [NP, NURSE] and len(requests) == 6
    assert all("She wants to prescribe." in r.messages[-1]["content"] for r in requests)
    assert {r.prefix[-1]["content"] for r in requests} == {requests[0].prefix[-1]["content"]}  # one shared prefix
    scores = {r.code: -float(i) for i, r in enumerate(requests)}
    scores[requests[3].code] = 0.5  # the model likes the fourth best
    pred = p.finish_ranked(state, scores)
    assert pred.ranked.codes[0] == requests[3].code and pred.ranked.method == LIKELIHOOD_METHOD
    assert pred.reason == "She wants to prescribe." and len(pred.ranked.codes) == 5
    # nothing scored (every candidate failed): the free answer, as the free mode reads it
    fallback = p.finish_ranked(state, {r.code: None for r in requests})
    assert fallback.ranked.codes[0] == NP and fallback.ranked.method == "exact"
    errored = p.finish_ranked(None, {}, error="prompt too long", history_codes=[NURSE])
    assert errored.ranked.method == "history" and errored.error == "prompt too long"


def test_ranked_mode_needs_the_vllm_backend():
    from pydantic import ValidationError

    from jobpred.config import LLMConfig
    from jobpred.llm.engine import build_processor

    http = {"backend": "http", "http": {"url": "http://127.0.0.1:1/v1/chat/completions", "model": "m"}}
    with pytest.raises(ValidationError, match=r"needs predict\.engine\.backend 'vllm'"):
        _cfg(engine=http)
    with pytest.raises(ValueError, match="vllm backend"):
        build_processor(LLMConfig(**http), score=True)


def test_ranked_mode_needs_an_engine_without_lora():
    """vLLM 0.32 kills an engine with LoRA on that is asked for prompt logprobs: refused at config time, and
    a server whose replicas serve adapters refuses ranked requests with a 422."""
    from pydantic import ValidationError

    from jobpred.serving.schemas import BadRequest
    from jobpred.serving.service import PredictService

    with pytest.raises(ValidationError, match=r"needs predict\.adapters 'merged'"):
        _cfg(adapters="lora")
    cfg = JobpredConfig(predict={"engine": {"max_model_len": 1024}})
    count = TokenCounter(engine_config(cfg))

    async def generate(model, messages, sampling):
        return ""

    service = PredictService(model_id="base", adapters={"joint"}, generate=generate, count=count,
                             context=count.context, predict=cfg.predict, ranker=AnswerRanker(top_k=5), score=None)
    with pytest.raises(BadRequest, match="LoRA") as err:
        service.resolve_mode("ranked")
    assert err.value.status == 422 and err.value.field == "answer_mode"
    assert service.resolve_mode(None) == "free" and service.resolve_mode("constrained") == "constrained"


def test_a_choice_predictor_may_answer_only_a_candidate_title(ranker):
    """'choice': the answer block is held by a regex to the ranked mode's candidates (no generated answer
    among them), so every first choice is one of them, read as an exact title; the reason stays the model's."""
    import re

    cfg = _cfg(answer_mode="choice", rank_candidates=6, adapters="lora")
    count = TokenCounter(engine_config(cfg))
    jobs = [{"title": "Staff nurse", "onet_code": NURSE, "onet_title": "Registered Nurses", "start": "2015-01",
             "end": None}]
    tax = ranker.taxonomy
    allowed = [tax.title(c) for c in candidate_codes(tax, [NURSE], None, k=6)]
    other = next(t for t in tax.titles() if t not in allowed)
    for name in ("joint", "zero-shot"):
        p = Predictor(name, cfg.predict, ranker, count, count.context)
        state = p.start(None, jobs)
        rx = re.compile(p.request(state).regex)
        head = "<think>\nlikes caring for people\n</think>\n<answer>" if name == "joint" else ""
        assert all(rx.fullmatch(f"{head}{t}</answer>") for t in allowed), name
        assert not rx.fullmatch(f"{head}{other}</answer>"), name
        done = p.finish(state.add(f"{head}{allowed[3]}</answer>"))
        assert done.ranked.codes[0] == tax.to_code(allowed[3]) and done.ranked.method == "exact"
    # the answer step has room for the longest official title at a token per character (answer_max_tokens
    # is 16): held by a regex, a model may spell a title in many more tokens than its tokenizer would
    longest = max(tax.titles(), key=len)
    assert p.request(state).max_tokens >= len(f"<answer>{longest}</answer>") > cfg.predict.answer_max_tokens
    joint = Predictor("joint", cfg.predict, ranker, count, count.context)  # the same room after its reason's
    assert joint.request(joint.start(None, jobs)).max_tokens >= cfg.predict.max_tokens + len(longest)
    # the reason step of two-model keeps the reason block's format; its answer step is held to the candidates
    p = Predictor("two-model", cfg.predict, ranker, count, count.context)
    state = p.start(None, jobs)
    assert re.compile(p.request(state).regex).fullmatch("<think>\nlikes caring for people\n</think>")
    answer = re.compile(p.request(state.add("<think>\nlikes caring\n</think>")).regex)
    assert answer.fullmatch(f"<answer>{allowed[0]}</answer>") and not answer.fullmatch(f"<answer>{other}</answer>")
    # no known occupation in the history: every official title is allowed
    p = Predictor("zero-shot", cfg.predict, ranker, count, count.context)
    unknown = p.start(None, [{**jobs[0], "onet_code": None}])
    assert re.compile(p.request(unknown).regex).fullmatch(f"{other}</answer>")
