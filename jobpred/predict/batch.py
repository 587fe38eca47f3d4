"""Batch prediction: every configured LLM predictor over a split, in ONE streaming Ray Data pipeline.

Run as:
    jobpred evaluate --config configs/local.yaml --run runs/demo              # baselines + LLM predictors
    python -m pipelines.evaluate --config configs/gpu-cluster.yaml --run /mnt/runs/r1

Pipeline (rows are example x predictor; adapters are chosen per row through the ``model`` column, so one
vLLM engine serves the base model and every LoRA adapter -- there is no engine per adapter):

    examples of the split -> BuildRequests   step 1 of each predictor (budget rule: oldest jobs dropped)
    -> engine (ray.data.llm, vLLM + LoRA)    step 1: answer / reason+answer / reason
    -> chain_step                            two-step predictors get step 2 (history + the reason just
                                             written); finished rows get a 1-token no-op request
    -> engine                                step 2 (the predictor adapter)   [only if a two-step predictor runs]
    -> RankAnswers                           parse, map to O*NET, ranked top-k (jobpred/predict/answers.py)
    -> driver: RUN_DIR/predictions/<predictor>.parquet (+ reason, raw output, answer method, error)

With ``predict.answer_mode: ranked`` the answer is scored, not generated (:mod:`jobpred.predict.likelihood`):

    examples -> BuildRequests -> [engine: the reason, for predictors that write one]
    -> ScoreRequests                         one row per candidate occupation (its title after the prompt)
    -> engine (score=True)                   prompt logprobs of each title, the shared prefix from the cache
    -> groupby(example, predictor).map_groups(RankLikelihood) -> the candidates ranked by likelihood

With ``predict.base_apart_from_adapters`` (the CPU configs) the base-model predictors and the adapter
predictors run as two executions of this pipeline, one after the other: vLLM's CPU LoRA kernels make
every row of a step pay for LoRA once any row of it uses an adapter (see :func:`execution_groups`).

ray.data.llm has no per-row "skip this stage", hence the no-op requests: a few prompt tokens and one
generated token per finished row, negligible next to a reason. Every example x predictor ends as one
predictions row: a row whose prompt does not fit or whose request failed still gets the ranker's
fall-back prediction, with ``error`` saying what happened (counted in the manifest).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import polars as pl
import pyarrow as pa

from jobpred.config import PREDICTOR_NAMES, REASON_SWAPS, JobpredConfig, LLMConfig
from jobpred.llm import engine
from jobpred.llm.budget import PromptTooLong, TokenCounter
from jobpred.models import resolve_model
from jobpred.predict.answers import AnswerRanker
from jobpred.predict.likelihood import recover_shared_positions
from jobpred.predict.merged import merged_model
from jobpred.predict.predictor import Predictor, State, StepRequest
from jobpred.predict.steps import adapters_needed, generation_steps, predictor_steps, stage_adapters
from jobpred.predictions import example_features
from jobpred.rundir import RunDir
from jobpred.schema import PREDICTIONS_SCHEMA
from jobpred.storage import Location, is_uri

_LIGHT_CPU = 0.1
_NOOP = [{"role": "user", "content": "-"}]
MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
REQUEST_SCHEMA = pa.schema([
    ("example_id", pa.string()), ("predictor", pa.string()), ("n_steps", pa.int8()), ("model", pa.string()),
    ("messages", MESSAGES_TYPE), ("sampling", pa.string()), ("history_json", pa.string()),
    ("history_jobs_dropped", pa.int32()), ("history_codes", pa.list_(pa.string())), ("error", pa.string()),
])
RESULT_SCHEMA = pa.schema([
    ("example_id", pa.string()), ("predictor", pa.string()), ("ranked_codes", pa.list_(pa.string())),
    ("ranked_scores", pa.list_(pa.float64())), ("reason", pa.string()), ("answer_text", pa.string()), ("answer_method", pa.string()),
    ("format_problem", pa.string()), ("raw_output", pa.string()), ("error", pa.string()),
    ("prompt_tokens", pa.int32()), ("generated_tokens", pa.int32()), ("history_jobs_dropped", pa.int32()),
    ("adapters", pa.string()), ("prompt_version", pa.string()), ("history_json", pa.string()),
])
"""One row per example x predictor, what the driver collects (extra columns of the predictions table)."""


def engine_config(cfg: JobpredConfig, model: str | None = None) -> LLMConfig:
    """The prediction engine: ``predict.engine`` on the base model the adapters were trained on, with LoRA on
    (rank of ``train.lora``), as the Serve replicas build it; with ``model`` (a merged adapter, or the base for
    base-model steps when adapters are merged), that one model and no LoRA."""
    if model is not None:
        return cfg.predict.engine.model_copy(update={"model": model})
    lora = engine.lora_engine_kwargs(cfg.train.lora.rank, max_loras=4)
    return cfg.predict.engine.model_copy(update={
        "model": cfg.adapter_base, "engine_kwargs": {**lora, **cfg.predict.engine.engine_kwargs}})


def predictors(cfg: JobpredConfig, names: list[str]) -> dict[str, Predictor]:
    """The :class:`Predictor` of each name, sharing one tokenizer and one ranker (an actor builds them once)."""
    count = TokenCounter(engine_config(cfg))
    ranker = AnswerRanker(top_k=cfg.predict.top_k, nearest_min_score=cfg.predict.nearest_min_score)
    return {name: Predictor(name, cfg.predict, ranker, count, count.context, cfg.history_format) for name in names}


def _state(row: dict, texts: list[str]) -> State:
    return State(row["history_json"] or "", row["history_jobs_dropped"], tuple(row["history_codes"]), tuple(texts))


class _Stage:
    """A Ray Data actor holding the predictors (tokenizer, taxonomy and title normaliser loaded once).

    ``models``: with merged adapters, the one model each engine stage serves (step 1, step 2); every row of
    that stage names it. Without (None), rows name their adapter's directory and one LoRA engine serves all."""

    def __init__(self, cfg: JobpredConfig, names: list[str], adapter_paths: dict[str, str],
                 models: tuple[str, ...] | None = None) -> None:
        self.cfg, self.paths, self.models = cfg, adapter_paths, models
        self.predictors = predictors(cfg, names)
        self.base = resolve_model(engine_config(cfg).model)
        constrained = cfg.predict.answer_mode in ("constrained", "choice")
        # a 1-token request with the same sampling keys as real ones: every row of a batch must carry the
        # same keys (Ray Data builds one Arrow struct of them; a missing key becomes nulls and mixed types)
        self._noop_sampling = json.dumps(
            {"temperature": 0.0, "top_p": 1.0, "max_tokens": 1, "seed": 0, **({"regex": "-"} if constrained else {})})

    def _model(self, step: int, adapter: str | None) -> str:
        """The model of engine stage ``step`` (-1: the last, the ranked mode's scoring) for ``adapter``."""
        if self.models is not None:
            return self.models[-1 if step < 0 else min(step, len(self.models) - 1)]
        if not adapter:
            return self.base
        path = self.paths[adapter]  # in a bucket: the adapter's name, found under lora_root (build_pipeline)
        return path.rsplit("/", 1)[-1] if is_uri(path) else path

    def noop(self, step: int) -> dict:
        return {"model": self._model(step, None), "messages": _NOOP, "sampling": self._noop_sampling}

    def columns(self, req: StepRequest, step: int) -> dict:
        """The engine columns of one request (greedy: the predictions are reproducible)."""
        sampling = {"temperature": 0.0, "top_p": 1.0, "max_tokens": req.max_tokens, "seed": 0}
        if req.regex is not None:
            sampling["regex"] = req.regex
        return {"model": self._model(step, req.adapter), "messages": req.messages, "sampling": json.dumps(sampling)}


class BuildRequests(_Stage):
    """Ray Data actor: example rows -> step-1 requests, one per configured predictor."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for ex in batch.to_pylist():
            codes = [j["onet_code"] for j in ex["history"]]
            for name, p in self.predictors.items():
                if name in REASON_SWAPS:  # its rows are made after step 1, from the reasons of the batch
                    continue
                row = {"example_id": ex["example_id"], "predictor": name, "n_steps": len(p.steps),
                       "history_codes": codes, "history_jobs_dropped": 0, "error": None}
                try:
                    state = p.start(ex["education"], ex["history"])
                    req = p.request(state)  # None: a ranked-mode predictor that generates nothing
                    row.update(history_json=state.history_json, history_jobs_dropped=state.history_jobs_dropped,
                               **(self.columns(req, 0) if req else self.noop(0)))
                except PromptTooLong as exc:
                    row.update(history_json=None, error=f"prompt too long: {exc}", **self.noop(0))
                rows.append(row)
        return pa.Table.from_pylist(rows, schema=REQUEST_SCHEMA)


def _rename_outputs(batch: pa.Table, prefix: str) -> pa.Table:
    names = [prefix + n if n in engine.OUTPUT_COLUMNS else n for n in batch.column_names]
    return batch.rename_columns(names)


class ChainStep(_Stage):
    """Ray Data actor: after step 1, the second request of two-step predictors (no-op for the others)."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        batch = _rename_outputs(batch, "s1_")
        batch = pa.concat_tables([batch, *self.swapped(batch)])
        cols = []
        for r in batch.select(["predictor", "n_steps", "history_json", "history_jobs_dropped", "history_codes",
                               "s1_generated_text", "s1_llm_error", "error"]).to_pylist():
            if r["n_steps"] < 2 or r["error"] or r["s1_llm_error"]:
                cols.append(self.noop(1))
                continue
            req = self.predictors[r["predictor"]].request(_state(r, [r["s1_generated_text"]]))
            cols.append(self.columns(req, 1))
        batch = batch.drop_columns([c for c in ("model", "messages", "sampling") if c in batch.column_names])
        return (batch.append_column("model", pa.array([c["model"] for c in cols], pa.string()))
                .append_column("messages", pa.array([c["messages"] for c in cols], MESSAGES_TYPE))
                .append_column("sampling", pa.array([c["sampling"] for c in cols], pa.string())))


    def swapped(self, batch: pa.Table) -> list[pa.Table]:
        """The rows of the reason-swap arms (:data:`jobpred.config.REASON_SWAPS`): a copy of each row of the
        predictor they take reasons from, given the reason written for the next example of this batch
        (a rotation: each reason is given once, to someone else). A row whose own step 1 failed keeps its
        error; with fewer than two usable reasons in the batch there is no other person's reason, which the
        row's error says (it then gets the ranker's fall-back, like any failed row)."""
        arms = [arm for arm in self.predictors if arm in REASON_SWAPS]
        if not arms:
            return []
        rows = batch.to_pylist()
        out = []
        for arm in arms:
            own = [r for r in rows if r["predictor"] == REASON_SWAPS[arm]]
            usable = [i for i, r in enumerate(own) if not (r["error"] or r["s1_llm_error"])]
            partner = {i: usable[(k + 1) % len(usable)] for k, i in enumerate(usable)} if len(usable) > 1 else {}
            for i, r in enumerate(own):
                new = {**r, "predictor": arm, "s1_prompt_tokens": 0, "s1_generated_tokens": 0}  # no reasoner pass
                if i in partner:
                    new["s1_generated_text"] = own[partner[i]]["s1_generated_text"]
                elif i in usable:
                    new["error"] = "reason swap: no other person's reason in this batch"
                out.append(new)
        return [pa.Table.from_pylist(out, schema=batch.schema)] if out else []


class RankAnswers(_Stage):
    """Ray Data actor: generated text -> reason, answer text and a ranked list of valid O*NET codes."""

    def __init__(self, cfg: JobpredConfig, names: list[str], adapter_paths: dict[str, str], two_step: bool,
                 models: tuple[str, ...] | None = None) -> None:
        super().__init__(cfg, names, adapter_paths, models)
        self.two_step = two_step

    def __call__(self, batch: pa.Table) -> pa.Table:
        if not self.two_step:
            batch = _rename_outputs(batch, "s1_")
        return pa.Table.from_pylist([self.finish(r) for r in batch.to_pylist()], schema=RESULT_SCHEMA)

    def finish(self, r: dict) -> dict:
        p = self.predictors[r["predictor"]]
        texts = [r["s1_generated_text"] or ""]
        error = r["error"] or r["s1_llm_error"] or None
        tokens = [r["s1_prompt_tokens"] or 0, r["s1_generated_tokens"] or 0]
        if len(p.steps) > 1 and not error:
            texts.append(r["generated_text"] or "")
            error = r["llm_error"] or None
            tokens = [tokens[0] + (r["prompt_tokens"] or 0), tokens[1] + (r["generated_tokens"] or 0)]
        pred = p.finish(_state(r, texts), error)
        return {"example_id": r["example_id"], "predictor": r["predictor"], "ranked_codes": pred.ranked.codes,
                "ranked_scores": pred.ranked.scores, "reason": pred.reason, "answer_text": pred.answer_text, "answer_method": pred.ranked.method,
                "format_problem": pred.format_problem, "raw_output": pred.raw_output, "error": pred.error,
                "prompt_tokens": tokens[0], "generated_tokens": tokens[1],
                "history_jobs_dropped": r["history_jobs_dropped"], "adapters": ",".join(p.adapters) or None,
                "prompt_version": p.prompt_version, "history_json": r["history_json"]}


SCORE_COLUMNS = ("example_id", "predictor", "code", "history_json", "history_jobs_dropped", "history_codes",
                 "error", "s1_generated_text", "s1_llm_error", "s1_prompt_tokens", "s1_generated_tokens",
                 "prompt_tokens", "scored_token_ids", "scored_logprobs", "llm_error")
"""What the ranked mode's grouping step reads of each scored candidate row."""


class ScoreRequests(_Stage):
    """Ray Data actor ('ranked' mode): after the generation step, one scoring row per candidate occupation
    (:meth:`jobpred.predict.predictor.Predictor.score_requests`); a row that failed before keeps one no-op
    row with ``code`` null, so that every example x predictor still ends as one prediction."""

    def __init__(self, cfg: JobpredConfig, names: list[str], adapter_paths: dict[str, str], generated: bool,
                 models: tuple[str, ...] | None = None) -> None:
        super().__init__(cfg, names, adapter_paths, models)
        self.generated = generated  # the pipeline ran a generation stage before this one

    def __call__(self, batch: pa.Table) -> pa.Table:
        batch = _rename_outputs(batch, "s1_") if self.generated else batch
        rows = []
        for r in batch.to_pylist():
            p = self.predictors[r["predictor"]]
            gen = bool(p.gen_steps) and self.generated
            keep = {"example_id": r["example_id"], "predictor": r["predictor"], "history_json": r["history_json"],
                    "history_jobs_dropped": r["history_jobs_dropped"], "history_codes": r["history_codes"],
                    "s1_generated_text": r.get("s1_generated_text") if gen else None,
                    "s1_prompt_tokens": r.get("s1_prompt_tokens") if gen else 0,
                    "s1_generated_tokens": r.get("s1_generated_tokens") if gen else 0}
            error = r["error"] or (r.get("s1_llm_error") if gen else None) or None
            keep.update(error=error, s1_llm_error="")
            requests = [] if error else p.score_requests(_state(r, [keep["s1_generated_text"] or ""] if gen else []))
            if not requests:
                rows.append({**keep, "code": None, "score_from": 0, **self.noop(-1)})
                continue
            start = p.count(requests[0].prefix)  # the same for every candidate: only the title differs
            for req in requests:
                rows.append({**keep, "code": req.code, "score_from": start, "sampling": "{}",
                             "model": self._model(-1, req.adapter), "messages": req.messages})
        return pa.Table.from_pylist(rows, schema=SCORE_REQUEST_SCHEMA)


SCORE_REQUEST_SCHEMA = pa.schema([
    ("example_id", pa.string()), ("predictor", pa.string()), ("code", pa.string()), ("history_json", pa.string()),
    ("history_jobs_dropped", pa.int32()), ("history_codes", pa.list_(pa.string())), ("error", pa.string()),
    ("s1_generated_text", pa.string()), ("s1_llm_error", pa.string()), ("s1_prompt_tokens", pa.int32()),
    ("s1_generated_tokens", pa.int32()), ("score_from", pa.int32()), ("model", pa.string()),
    ("messages", MESSAGES_TYPE), ("sampling", pa.string()),
])


class RankLikelihood(_Stage):
    """Ray Data ``map_groups`` ('ranked' mode): the scored candidates of one example x predictor -> its
    RESULT_SCHEMA row, the candidates ranked by log P(title | prompt)."""

    def __call__(self, group: pa.Table) -> pa.Table:
        rows = group.select(list(SCORE_COLUMNS)).to_pylist()
        first = rows[0]
        p = self.predictors[first["predictor"]]
        scored = [r for r in rows if r["code"] is not None and not r["llm_error"]]
        logprobs = recover_shared_positions([list(r["scored_token_ids"] or []) for r in scored],
                                            [list(r["scored_logprobs"] or []) for r in scored])
        scores = {r["code"]: engine.title_logprob(lp) for r, lp in zip(scored, logprobs)}
        errors = [r["llm_error"] for r in rows if r["llm_error"]]
        error = first["error"] or (f"every candidate failed: {errors[0]}" if errors and not scored else None)
        texts = [first["s1_generated_text"]] if first["s1_generated_text"] is not None else []
        state = _state(first, texts) if first["history_json"] is not None else None
        pred = p.finish_ranked(state, scores, error, history_codes=first["history_codes"])
        prompt_tokens = (first["s1_prompt_tokens"] or 0) + sum(r["prompt_tokens"] or 0 for r in scored)
        out = {"example_id": first["example_id"], "predictor": first["predictor"], "ranked_codes": pred.ranked.codes,
               "ranked_scores": pred.ranked.scores, "reason": pred.reason, "answer_text": pred.answer_text, "answer_method": pred.ranked.method,
               "format_problem": pred.format_problem, "raw_output": pred.raw_output, "error": pred.error,
               "prompt_tokens": prompt_tokens, "generated_tokens": first["s1_generated_tokens"] or 0,
               "history_jobs_dropped": first["history_jobs_dropped"], "adapters": ",".join(p.adapters) or None,
               "prompt_version": p.prompt_version, "history_json": first["history_json"]}
        return pa.Table.from_pylist([out], schema=RESULT_SCHEMA)


def build_pipeline(ds, cfg: JobpredConfig, names: list[str], adapter_paths: dict[str, str],
                   models: tuple[str, ...] | None = None):
    """Example rows -> RESULT_SCHEMA rows (lazy Ray Dataset); ``models``: see :class:`_Stage`."""
    import ray

    def econf(step: int) -> LLMConfig:
        if models is None:
            return engine_config(cfg)
        return engine_config(cfg, models[-1 if step < 0 else min(step, len(models) - 1)])

    def processor(conf: LLMConfig, score: bool = False):
        return engine.build_processor(conf, score=score, lora_root=None if models else lora_root(adapter_paths))

    pool = ray.data.ActorPoolStrategy(min_size=1, max_size=1)
    kwargs = {"cfg": cfg, "names": names, "adapter_paths": adapter_paths, "models": models}
    ds = ds.map_batches(BuildRequests, fn_constructor_kwargs=kwargs,
                        batch_size=16, batch_format="pyarrow", num_cpus=_LIGHT_CPU, compute=pool)
    if cfg.predict.answer_mode == "ranked":
        generated = any(generation_steps(p, "ranked") for p in names)
        if generated:
            ds = processor(econf(0))(ds)
            if cfg.predict.one_engine_at_a_time:
                ds = ds.materialize()  # the generation engine stops before the scoring engine starts
        ds = ds.map_batches(ScoreRequests, fn_constructor_kwargs={**kwargs, "generated": generated},
                            batch_size=None, batch_format="pyarrow", num_cpus=_LIGHT_CPU, compute=pool)
        ds = processor(econf(-1), score=True)(ds)
        return ds.groupby(["example_id", "predictor"]).map_groups(
            RankLikelihood, fn_constructor_kwargs=kwargs, batch_format="pyarrow", num_cpus=_LIGHT_CPU,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=1))
    ds = processor(econf(0))(ds)
    two_step = any(len(predictor_steps(p)) > 1 for p in names)
    if two_step and cfg.predict.one_engine_at_a_time:
        ds = ds.materialize()  # step 1 runs to the end and its engine stops before step 2's starts
    if two_step:
        ds = ds.map_batches(ChainStep, fn_constructor_kwargs=kwargs,
                            batch_size=None, batch_format="pyarrow", num_cpus=_LIGHT_CPU, compute=pool)
        ds = processor(econf(1))(ds)
    return ds.map_batches(RankAnswers, fn_constructor_kwargs={**kwargs, "two_step": two_step},
                          batch_size=None, batch_format="pyarrow", num_cpus=_LIGHT_CPU, compute=pool)


def execution_groups(cfg: JobpredConfig, predictors: list[str]) -> list[list[str]]:
    """The predictors of each pipeline execution, in order: all in one, or (with
    ``predict.base_apart_from_adapters``) the base-model ones, then the adapter ones; with merged adapters,
    one execution per chain of models (the predictors whose steps use the same adapters)."""
    if cfg.predict.adapters == "merged":
        chains: dict[tuple, list[str]] = {}
        for name in predictors:
            chains.setdefault(tuple(s.adapter for s in predictor_steps(name)), []).append(name)
        return list(chains.values())
    if not cfg.predict.base_apart_from_adapters:
        return [predictors]
    base = [p for p in predictors if not adapters_needed(p)]
    return [g for g in (base, [p for p in predictors if p not in base]) if g]


def predict_table(examples: pa.Table, cfg: JobpredConfig, predictors: list[str],
                  adapter_paths: dict[str, str], merged_root: Path | None = None) -> pa.Table:
    """Every example x predictor through the pipeline (one execution per :func:`execution_groups` group),
    streamed back to the driver: RESULT_SCHEMA rows. Ray must be initialised. With ``predict.adapters:
    merged``, the adapters are merged into copies of the base under ``merged_root`` first."""
    import ray

    tables = []
    for group in execution_groups(cfg, predictors):
        models = None
        if cfg.predict.adapters == "merged" and merged_root is not None:
            base = resolve_model(cfg.adapter_base)
            models = tuple(merged_model(base, adapter_paths[a], merged_root) if a else base
                           for a in stage_adapters(group[0], cfg.predict.answer_mode))
        ds = build_pipeline(ray.data.from_arrow(examples), cfg, group, adapter_paths, models)
        tables.append(collect(ds, examples.num_rows * len(group)))
    return pa.concat_tables(tables)


def trained_adapters(run_dir: str | os.PathLike, history_format: str) -> dict[str, str]:
    """Adapter name -> absolute directory, from the manifest's ``train`` stage ({} before training).

    An adapter is prompted only with the history rendering it was trained on (those recorded before the
    rendering was recorded were trained on 'json'); another one is a clear error, not a silent mismatch."""
    run = RunDir(run_dir)
    adapters = run.manifest()["stages"].get("train", {}).get("adapters", {})
    other = {name: info.get("history_format", "json") for name, info in adapters.items()
             if info.get("history_format", "json") != history_format}
    if other:
        raise ValueError(f"adapters {sorted(other)} in {run.path} were trained with history_format="
                         f"{sorted(set(other.values()))[0]}, the config says {history_format}; set history_format "
                         f"to match, or train them again (`jobpred run --force train`)")
    return {name: str(run.path / info["path"]) for name, info in adapters.items()}  # run.path: absolute


def lora_root(adapter_paths: dict[str, str]) -> str | None:
    """The bucket prefix the adapters lie under (what the engines load them from by name), or None when
    they are local directories (rows name them directly)."""
    uris = [p for p in adapter_paths.values() if is_uri(p)]
    if not uris:
        return None
    roots = {p.rsplit("/", 1)[0] for p in uris}
    if len(roots) > 1 or len(uris) != len(adapter_paths):  # one engine loads them all from one prefix
        raise ValueError(f"adapters in more than one place: {sorted(adapter_paths.values())}")
    return roots.pop()


def plan_predictors(cfg: JobpredConfig, adapters: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """(predictors to run, predictor -> why it is skipped), by ``predict.missing_adapters``."""
    run, skipped = [], {}
    for name in cfg.predict.predictors:
        missing = [a for a in adapters_needed(name) if a not in adapters]
        if not missing:
            run.append(name)
        elif cfg.predict.missing_adapters == "error":
            raise ValueError(f"predictor {name} needs adapter(s) {missing}, not trained in this run; run "
                             f"`jobpred train` (mode joint / two-model, --dpo) or remove it from predict.predictors")
        else:
            skipped[name] = f"adapter(s) {', '.join(missing)} not trained in this run"
    return run, skipped


def collect(ds, total: int) -> pa.Table:
    """Stream the result rows to the driver with a progress bar (rows, rows/s, generated tokens/s)."""
    from tqdm import tqdm

    tables, tokens, start = [], 0, time.perf_counter()
    with tqdm(total=total, desc="predict", unit="row", mininterval=5) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            tables.append(batch)
            tokens += sum(v or 0 for v in batch.column("generated_tokens").to_pylist())
            bar.update(batch.num_rows)
            bar.set_postfix(tokens_per_s=round(tokens / (time.perf_counter() - start), 1))
    return pa.concat_tables(tables) if tables else RESULT_SCHEMA.empty_table()


def remove_other_tables(out_dir: Location, predictors: list[str]) -> None:
    """Remove the tables of LLM predictors this evaluation does not run: they are of an earlier evaluation
    (other examples, other models), and the report scores every table it finds."""
    for name in set(PREDICTOR_NAMES) - set(predictors):
        (out_dir / f"{name}.parquet").unlink(missing_ok=True)


def write_tables(out_dir: Location, examples: pl.DataFrame, results: pl.DataFrame, predictors: list[str]) -> dict:
    """One predictions table per predictor (PREDICTIONS_SCHEMA columns first, then the LLM extras)."""
    feats = example_features(examples).collect()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in predictors:
        rows = results.filter(pl.col("predictor") == name).drop("predictor", "history_json")
        table = feats.join(rows, on="example_id", how="left", validate="1:1").with_columns(
            pl.col("ranked_codes").list.first().alias("predicted_code"))
        if table["ranked_codes"].null_count():
            raise RuntimeError(f"{name}: {table['ranked_codes'].null_count()} examples came back without a row")
        extra = [c for c in table.columns if c not in PREDICTIONS_SCHEMA.names]
        path = out_dir / f"{name}.parquet"
        table.select([*PREDICTIONS_SCHEMA.names, *extra]).write_parquet(str(path))
        paths[name] = path
    return paths
