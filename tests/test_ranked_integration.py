"""The 'ranked' answer mode for real: Ray Data + vLLM (CPU) prompt logprobs with the prefix cache read, on
the default model, checked against a transformers forward pass over the same prompts."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest
from trainkit import REPO, oracle_run

from jobpred.config import load_config
from jobpred.llm.budget import TokenCounter
from jobpred.predict.batch import engine_config, predict_table, predictors
from jobpred.taxonomy import Taxonomy

pytestmark = pytest.mark.integration
N = 3
NAMES = ["zero-shot", "zero-shot-reason"]


@pytest.fixture(scope="module")
def ranked(tmp_path_factory, ray_session):
    run_dir = oracle_run(tmp_path_factory.mktemp("ranked"), persons=60, oracle_rows=2)
    examples = pq.read_table(run_dir / "examples" / "test.parquet").slice(0, N)
    cfg = load_config(REPO / "configs" / "local.yaml", [
        "predict.answer_mode=ranked", "predict.rank_candidates=16", "predict.max_tokens=24",
        "predict.engine.max_model_len=1024", "predict.top_k=16"])
    results = predict_table(examples, cfg, NAMES, {}, merged_root=run_dir / "merged")
    return cfg, examples, {(r["example_id"], r["predictor"]): r for r in results.to_pylist()}


def test_every_first_choice_is_the_models_ranking_of_the_candidates(ranked):
    _, examples, rows = ranked
    tax = Taxonomy.load()
    assert len(rows) == N * len(NAMES)
    for row in rows.values():
        assert row["error"] is None and row["answer_method"] == "likelihood", row["raw_output"]
        codes, probs = row["ranked_codes"], row["ranked_scores"]
        assert len(codes) == len(set(codes)) == 16 and all(c in tax for c in codes)
        assert probs == sorted(probs, reverse=True) and 0.99 <= sum(probs) <= 1.01  # all 16 candidates
    # the reason-writing predictor generated its reason first; the answer-only one generated nothing
    assert all(rows[(e, "zero-shot-reason")]["generated_tokens"] > 0 for e in examples["example_id"].to_pylist())
    assert all(rows[(e, "zero-shot")]["generated_tokens"] == 0 for e in examples["example_id"].to_pylist())


def test_scores_read_through_the_prefix_cache_match_a_transformers_forward_pass(ranked):
    """vLLM serves the shared prompt prefix from its cache and scores only each title: the candidates'
    log-likelihood differences must be those of a plain full forward pass (float32 on the CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    from jobpred.models import resolve_model

    cfg, examples, rows = ranked
    count = TokenCounter(engine_config(cfg))
    model = AutoModelForCausalLM.from_pretrained(resolve_model(cfg.model), dtype=torch.float32).eval()
    p = predictors(cfg, ["zero-shot"])["zero-shot"]
    ex = examples.slice(0, 1).to_pylist()[0]
    row = rows[(ex["example_id"], "zero-shot")]
    requests = {r.code: r for r in p.score_requests(p.start(ex["education"], ex["history"]))}
    start = count(next(iter(requests.values())).prefix)

    def logprob(code: str) -> float:
        ids = count.tokenizer.apply_chat_template(requests[code].messages, tokenize=True, continue_final_message=True)
        ids = torch.tensor([list(ids["input_ids"] if hasattr(ids, "keys") else ids)])
        with torch.no_grad():
            logits = model(ids).logits.log_softmax(-1)[0]
        return float(sum(logits[i - 1, ids[0, i]] for i in range(start, ids.shape[1])))

    # the candidates whose (4-decimal) probability is precise enough to compare
    codes, probs = zip(*[(c, q) for c, q in zip(row["ranked_codes"], row["ranked_scores"]) if q >= 0.005][:5])
    assert len(codes) >= 2
    hf = [logprob(c) for c in codes]
    vllm = [math.log(q) for q in probs]
    for h, v in zip(hf[1:], vllm[1:]):  # differences to the first choice: 0.25 nats of bf16-vs-fp32 slack
        assert abs((h - hf[0]) - (v - vllm[0])) < 0.25, (hf, vllm)
