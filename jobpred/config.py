"""Typed configuration: one pydantic model per pipeline section, YAML presets in ``configs/``, dotted overrides.

    cfg = load_config("configs/local.yaml", overrides=["prepare.seed=7", "synth.persons=500"])
    cfg.prepare.split.test   # 0.1

Unknown keys are errors (a typo in a YAML file must not be ignored). A preset may start from another
(``base: other.yaml``) and say only what it changes. Why defaults are what they are, and the measurements
behind them, are in ``docs/config.md``, one part per section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RayConfig(_Section):
    address: str | None = Field(None, description="Ray address ('auto' in `ray job submit`); None: start a local Ray.")
    num_cpus: int | None = Field(None, description="Logical CPUs of a local Ray (None: the machine's cores).")
    object_store_memory_mb: int | None = Field(None, description="Object store of a local Ray, MiB (None: Ray's).")


class SynthConfig(_Section):
    persons: int = Field(1000, ge=1, description="How many synthetic persons to write.")
    seed: int = Field(0, description="Random seed; the same seed gives byte-identical output.")
    partition_size: int = Field(50_000, ge=1, description="Persons generated per partition (bounds memory).")
    min_jobs: int = Field(2, ge=1, description="Fewest jobs per person.")
    max_jobs: int = Field(8, ge=1, description="Most jobs per person (before the occasional long career).")
    long_career_rate: float = Field(0.0005, ge=0, le=1, description="Share of persons with 60-120 jobs.")
    first_year_min: int = Field(1975, description="Earliest year a career may start.")
    last_year: int = Field(2025, description="No job starts after this year.")
    title_noise: float = Field(0.35, ge=0, le=1, description="Chance that a raw title gets noise (Sr., II, case).")
    typo_rate: float = Field(0.01, ge=0, le=1, description="Probability that a raw title gets a typo.")
    code_rate: float = Field(1.0, ge=0, le=1, description="Share of jobs that carry an onet_code (rest: title only).")

    @model_validator(mode="after")
    def _jobs(self) -> SynthConfig:
        if self.min_jobs > self.max_jobs:
            raise ValueError(f"synth.min_jobs ({self.min_jobs}) > synth.max_jobs ({self.max_jobs})")
        return self


class SplitConfig(_Section):
    train: float = Field(0.8, gt=0, lt=1, description="Share of persons in train.")
    val: float = Field(0.1, ge=0, lt=1, description="Share of persons in val.")
    test: float = Field(0.1, gt=0, lt=1, description="Share of persons in test.")

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"split shares must add to 1, got {self.train + self.val + self.test}")
        return self


class PrepareConfig(_Section):
    engine: Literal["ray", "local"] = Field("ray", description="'ray': Ray Data on file chunks; 'local': one process.")
    chunk_mb: float = Field(8.0, gt=0, description="Input bytes per Ray Data block of JSON Lines.")
    concurrency: int | None = Field(
        None, ge=1, description="Parallel prepare actors (None: Ray's CPUs minus one for the writer, at most 8).")
    seed: int = Field(0, description="Seed of the person-level split (a hash of seed and person_id).")
    split: SplitConfig = Field(default_factory=SplitConfig)
    history_max_jobs: int = Field(30, ge=1, description="Most history jobs kept per example: the most recent.")
    history_max_chars: int = Field(
        6000, ge=200, description="Length cap of a serialised history; oldest jobs dropped to fit (`truncated_jobs`).")
    min_match_score: float = Field(0.86, ge=0, le=1, description="Normaliser score below which a title is 'no match'.")


BASELINES = ("popular", "stay", "markov", "gru")
"""Baseline predictors `jobpred evaluate --baselines-only` can run (jobpred.eval.baselines)."""


class SequenceModelConfig(_Section):
    """The supervised GRU baseline (jobpred.eval.seqmodel): small enough to train on a CPU in seconds."""

    epochs: int = Field(10, ge=1, description="Passes over the train split's career prefixes.")
    embed: int = Field(64, ge=4, description="Occupation embedding size (input and tied output).")
    hidden: int = Field(128, ge=4, description="GRU hidden size.")
    dropout: float = Field(0.3, ge=0, lt=1, description="Dropout on code embeddings and the GRU output.")
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(256, ge=1, description="Examples per optimiser step (per worker under Ray Train).")
    max_history: int = Field(20, ge=1, description="Most recent history jobs the model reads.")
    seed: int = Field(0, description="Seed of the initial weights and the batch order.")
    threads: int | None = Field(1, ge=1, description="torch threads of in-process training/ranking (None: torch's).")


class BaselinesConfig(_Section):
    """Baseline predictors and how they are scored (`jobpred evaluate --baselines-only`)."""

    predictors: list[Literal["popular", "stay", "markov", "gru"]] = Field(
        default_factory=lambda: list(BASELINES),
        description="Baselines to run: popular (most frequent next occupation), stay (the last one again), "
        "markov (first-order Markov over O*NET codes), gru (supervised sequence model).")
    split: Literal["val", "test"] = Field("test", description="The split predictions are made for.")
    top_k: int = Field(10, ge=1, le=100, description="Length of each predictor's ranked list.")
    markov_alpha: float = Field(10.0, ge=0, description="Pseudo-counts of the O*NET prior added to each Markov state.")
    markov_changers_weight: float = Field(
        0.5, ge=0, le=1, description="Prior's share from the Career Changers Matrix (rest: Related Occupations).")
    gru: SequenceModelConfig = Field(default_factory=SequenceModelConfig)
    use_ray_train: bool = Field(False, description="Train the GRU on Ray Train (for large data) instead of in-process.")
    ray_train_workers: int = Field(2, ge=1, description="Ray Train CPU workers when use_ray_train is on.")
    bootstrap_samples: int = Field(1000, ge=0, description="Bootstrap resamples of the report's 95% CIs (0: none).")
    bootstrap_seed: int = Field(0, description="Seed of the bootstrap resamples.")


class HttpEndpointConfig(_Section):
    """An OpenAI-compatible chat-completions endpoint (e.g. GPT-4.1 as teacher or judge)."""

    url: str = Field("https://api.openai.com/v1/chat/completions", description="URL of the /chat/completions route.")
    model: str = Field("gpt-4.1", description="Model name sent in each request's payload.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="Environment variable of the API key (never the key itself); None: no key.")
    qps: int | None = Field(None, ge=1, description="Requests per second per worker (None: no limit).")
    max_retries: int = Field(3, ge=0, description="Retries of a request on 408/429/5xx or a connection error.")
    base_retry_wait_s: float = Field(1.0, gt=0, description="First back-off wait; doubles on each retry.")
    context_tokens: int = Field(128_000, ge=256, description="Context window of the endpoint's model (prompt budget).")
    chars_per_token: float = Field(3.5, gt=0, description="Prompt tokens are estimated as characters / this.")
    json_schema: bool = Field(True, description="Send the judge's JSON schema as response_format when supported.")


def _number_as_text(value: object) -> object:
    # YAML and the command line read VLLM_CPU_KVCACHE_SPACE=2 as a number; an environment variable is text
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


EnvValue = Annotated[str, BeforeValidator(_number_as_text)]


class LLMConfig(_Section):
    """One model behind `ray.data.llm`: local vLLM engine replicas, or an HTTP endpoint."""

    backend: Literal["vllm", "http"] = Field(
        "vllm", description="'vllm': vLLM engines in Ray actors; 'http': an OpenAI-compatible endpoint.")
    model: str = Field(
        "smollm2-135m-instruct", description="Embedded default, HF directory or hub id; backend http uses http.model.")
    max_model_len: int = Field(
        2048, ge=256, description="vLLM context length; prompt + max_tokens over it loses the oldest jobs.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="vLLM's weights and activations dtype ('auto': the checkpoint's on a GPU; on a CPU "
        "bfloat16 where it has bf16 kernels, AVX-512/AMX, else float32, where bf16 generates ~4x slower).")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per engine replica (vLLM tensor parallelism).")
    placement_bundles: list[dict[str, float]] | None = Field(
        default_factory=lambda: [{"CPU": 1}],
        description="Ray placement-group bundles of one replica, one per tensor-parallel worker: [{CPU: 1}] "
        "for vLLM's CPU build, [{GPU: 1, CPU: 4}] per GPU; None: one {GPU: 1, CPU: 1} per worker.")
    accelerator_type: str | None = Field(None, description="Ray accelerator type to pin replicas to, e.g. H100.")
    concurrency: int = Field(1, ge=1, description="Engine replicas (data parallelism across GPUs or nodes).")
    batch_size: int = Field(32, ge=1, description="Rows per batch sent to one engine replica.")
    max_concurrent_batches: int = Field(4, ge=1, description="Batches in flight per replica (keeps the engine busy).")
    stage_num_cpus: float = Field(0.25, gt=0, description="Logical CPUs of each chat-template / tokenizer actor.")
    engine_kwargs: dict = Field(
        default_factory=dict, description="More vLLM engine arguments (e.g. max_num_seqs); they override the above.")
    chat_template_kwargs: dict | None = Field(
        None, description="Passed to apply_chat_template, e.g. {enable_thinking: false} for Qwen3.")
    env: dict[str, EnvValue] = Field(
        default_factory=lambda: {"VLLM_CPU_KVCACHE_SPACE": "2"},
        description="Environment variables of the engine actors (VLLM_CPU_KVCACHE_SPACE: CPU KV cache, GiB).")
    http: HttpEndpointConfig = Field(default_factory=HttpEndpointConfig, description="Used by backend http.")


class ScoreWeights(_Section):
    """One number per judge criterion (weights of the combined score, or minimum scores)."""

    factuality: float = Field(1.0, ge=0, description="Factuality (history + reason).")
    coherence: float = Field(1.0, ge=0, description="Coherence (reason only).")
    utility: float = Field(1.0, ge=0, description="Utility (true next occupation + reason).")


class ReasonsConfig(_Section):
    """Oracle reasons (`jobpred reasons`): candidates from a teacher, three judge criteria, selection, DPO."""

    teacher: LLMConfig = Field(default_factory=LLMConfig, description="Writes the candidate reasons.")
    judge: LLMConfig = Field(default_factory=LLMConfig, description="Scores each candidate on three criteria.")
    split: Literal["train", "val", "test"] = Field("train", description="Examples that get oracle reasons.")
    max_examples: int | None = Field(None, ge=1, description="First N examples of the split (file order); None: all.")
    n_candidates: int = Field(4, ge=1, le=64, description="Candidate reasons sampled per example.")
    hinted: bool = Field(
        False, description="Also sample n_candidates candidates told the true next occupation (rationalisation).")
    temperature: float = Field(0.8, ge=0, description="Teacher sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Teacher nucleus sampling.")
    max_tokens: int = Field(512, ge=8, description="Most generated tokens per candidate (reason + answer).")
    seed: int = Field(0, description="Base seed; each candidate's seed is a hash of (seed, example, variant, index).")
    prefill_think: bool = Field(True, description="vLLM only: start the assistant turn with '<think>'.")
    constrain_format: bool = Field(
        False, description="vLLM only: a regex forces the <think>/<answer> format and an O*NET title as answer.")
    judge_temperature: float = Field(0.0, ge=0, description="Judge sampling temperature (0: greedy).")
    judge_retry_temperature: float = Field(0.7, ge=0, description="Temperature when retrying an unparsable judgement.")
    judge_max_tokens: int = Field(192, ge=16, description="Most generated tokens per judgement.")
    weights: ScoreWeights = Field(
        default_factory=ScoreWeights, description="Weights of the combined score (a weighted mean, 1-5).")
    min_scores: ScoreWeights = Field(
        default_factory=lambda: ScoreWeights(factuality=3, coherence=3, utility=3),
        description="A candidate scoring below any of these (1-5) cannot be the oracle.")
    min_combined: float = Field(3.0, ge=1, le=5, description="Lowest combined score an oracle may have.")
    require_correct_answer: bool = Field(False, description="The oracle's answer must map to the true next occupation.")
    reject_placeholders: bool = Field(
        True, description="A reason that is the format placeholder or names nothing of the history never passes.")
    min_grounding: float = Field(
        0.0, ge=0, le=1, description="Least share of the reason's checkable facts found in the history (0: off).")
    likelihood_gain: bool = Field(
        False, description="Also score each candidate by how much its reason raises the judge model's likelihood "
        "of the true next occupation (one prefill per candidate, no generation; reasons/gain.py).")
    select_by: Literal["judge", "likelihood_gain"] = Field(
        "judge", description="What ranks candidates for the oracle and the DPO pairs: the judge's combined score, "
        "or the likelihood gain (then the combined score breaks ties); needs likelihood_gain for the latter.")
    min_likelihood_gain: float | None = Field(
        None, description="Least likelihood gain (nats) an oracle may have, e.g. 0: its reason must not make the "
        "true occupation less likely (None: off); needs likelihood_gain.")
    dpo_margin: float = Field(
        1.0, ge=0, description="A DPO pair (best vs worst) needs a gap over this in what select_by ranks by "
        "(combined-score points, or nats of likelihood gain).")
    dpo_chosen_must_pass: bool = Field(True, description="A DPO pair's chosen side must pass the oracle bar.")
    commit_every: int = Field(64, ge=1, description="Examples per committed Parquet part (the most a crash loses).")
    progress_every_s: float = Field(10.0, gt=0, description="Seconds between progress lines.")

    @model_validator(mode="after")
    def _gain(self) -> ReasonsConfig:
        uses = [k for k, on in (("select_by: likelihood_gain", self.select_by == "likelihood_gain"),
                                ("min_likelihood_gain", self.min_likelihood_gain is not None)) if on]
        if uses and not self.likelihood_gain:
            raise ValueError(f"reasons.{uses[0]} needs reasons.likelihood_gain: true (the gains are not computed)")
        return self


class LoraSettings(_Section):
    """The LoRA adapter (peft ``LoraConfig``) that `jobpred train` fits on the frozen base model."""

    rank: int = Field(8, ge=1, description="LoRA rank r of each adapted weight matrix.")
    alpha: float = Field(16.0, gt=0, description="LoRA alpha; the update is scaled by alpha / rank.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input (SFT only; DPO turns it off).")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names to adapt (default: Llama/Qwen attention projections), or 'all-linear' "
        "(every linear layer but the output head). vLLM serves adapters on these layers.")


class DpoConfig(_Section):
    """Direct preference optimisation after SFT (joint model and reason generator), on ``dpo_pairs``."""

    enabled: bool = Field(False, description="Run DPO after SFT (also turned on by `jobpred train --dpo`).")
    beta: float = Field(0.1, gt=0, description="DPO beta: strength of the implicit KL penalty to the SFT model.")
    loss_type: Literal["sigmoid"] = Field("sigmoid", description="DPO loss: sigmoid (the paper's, Rafailov et al.).")
    lr: float = Field(5e-6, gt=0, description="Peak learning rate of the DPO run.")
    epochs: int = Field(2, ge=1, description="Passes over the preference pairs.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimiser steps (None: epochs).")
    batch_size: int | None = Field(
        None, ge=1, description="Pairs per worker per micro-batch (None: train.batch_size).")


class TrainConfig(_Section):
    """LoRA fine-tuning on oracle reasons with Ray Train (`jobpred train`): SFT, then optionally DPO."""

    mode: Literal["joint", "two-model"] = Field(
        "joint", description="'joint': one adapter writes reason and answer; 'two-model': a reasoner and a predictor.")
    model: str | None = Field(None, description="Base model to adapt (None: the top-level `model`).")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="Dtype of the frozen base weights ('auto': bfloat16 on a GPU or a CPU with bf16 "
        "kernels, AVX-512/AMX; float32 on others, where bf16 matmuls are ~200x slower); LoRA weights and "
        "optimiser state stay float32.")
    lora: LoraSettings = Field(default_factory=LoraSettings)
    max_length: int = Field(
        2048, ge=64, description="Prompt + target tokens; oldest jobs dropped to fit, else the example is skipped.")
    max_examples: int | None = Field(10_000, ge=1, description="Oracle rows used (first by example_id); None: all.")
    chat_template_kwargs: dict | None = Field(
        None, description="Chat template arguments ({enable_thinking: false} for Qwen3); as the predictor sends.")
    lr: float = Field(2e-5, gt=0, description="Peak learning rate of SFT (AdamW on the LoRA weights).")
    epochs: int = Field(8, ge=1, description="Passes over the oracle rows (SFT).")
    max_steps: int | None = Field(None, ge=1, description="Stop SFT after this many optimiser steps (None: epochs).")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="Learning-rate schedule after warmup (transformers' get_scheduler).")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the optimiser steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay on the LoRA weights.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping norm (None: no clipping).")
    batch_size: int = Field(2, ge=1, description="Sequences per worker per micro-batch.")
    grad_accum: int = Field(
        1, ge=1, description="Micro-batches per optimiser step; global batch = batch_size x grad_accum x workers.")
    packing: bool = Field(
        False, description="SFT: a micro-batch's sequences concatenated into one row, attention kept within each "
        "sequence by its position ids (TRL's padding-free collator): no padding tokens are computed.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass (less memory).")
    seed: int = Field(0, description="Seed of the LoRA init, the data order (per epoch) and dropout (per step).")
    num_workers: int = Field(2, ge=1, description="Ray Train workers (one per GPU on a cluster).")
    use_gpu: bool = Field(False, description="One GPU per worker; NCCL instead of gloo.")
    resources_per_worker: dict[str, float] = Field(
        default_factory=lambda: {"CPU": 1}, description="Ray resources of each worker, e.g. {CPU: 8, GPU: 1}.")
    accelerator_type: str | None = Field(None, description="Ray accelerator type to pin workers to, e.g. H100.")
    threads_per_worker: int | None = Field(
        None, ge=1, description="torch CPU threads per worker (None: the worker's CPU resource, at least 1).")
    worker_niceness: int | None = Field(
        0, ge=0, le=19, description="Unix niceness of the training workers and DPO reference actor (None: Ray's, 15).")
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="'ddp': every worker holds the frozen model, LoRA gradients are all-reduced; "
        "'fsdp': the base weights are sharded over the workers (GPUs only), for models one GPU cannot hold.")
    checkpoint_every: int = Field(50, ge=1, description="Optimiser steps between checkpoints (the last step is one).")
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept in storage (the newest).")
    max_failures: int = Field(3, ge=-1, description="Restarts from the last checkpoint before failing (-1: unlimited).")
    log_every: int = Field(1, ge=1, description="Optimiser steps between progress lines and ray.train.report metrics.")
    storage_path: str | None = Field(None, description="Ray Train storage (None: RUN_DIR/train); shared on a cluster.")
    dpo: DpoConfig = Field(default_factory=DpoConfig)

    @model_validator(mode="after")
    def _fsdp_needs_gpus(self) -> TrainConfig:
        if self.strategy == "fsdp" and not self.use_gpu:
            raise ValueError("train.strategy=fsdp needs train.use_gpu=true (Ray Train's FSDP runs on GPUs only)")
        return self


ANSWER_MODES = ("free", "constrained", "choice", "ranked")
"""How a predictor's answer becomes an occupation (``predict.answer_mode``; per request: ``?answer_mode=``)."""

PREDICTOR_NAMES = ("zero-shot", "zero-shot-reason", "joint", "joint-dpo", "two-model", "two-model-dpo",
                   "predictor-no-reason", "two-model-swapped")
REASON_SWAPS = {"two-model-swapped": "two-model"}
"""Evaluation arms of the reason swap (claim (c)) -> the predictor whose reasons they take: the same two steps,
but the predictor adapter reads the reason written for *another* person (the next example of the same batch).
Batch prediction only: Serve has no other person to take a reason from."""


class PredictConfig(_Section):
    """LLM predictors over a split (`jobpred evaluate`): one vLLM engine, LoRA adapters chosen per row."""

    predictors: list[Literal[PREDICTOR_NAMES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["zero-shot", "zero-shot-reason", "joint", "joint-dpo", "two-model",
                                 "predictor-no-reason"],
        description="LLM predictors to run (what each does: docs/predict.md, jobpred/predict/steps.py).")
    missing_adapters: Literal["skip", "error"] = Field(
        "skip", description="Predictor without trained adapters: 'skip' it (and say so) or fail ('error').")
    split: Literal["val", "test"] = Field("test", description="The split predictions are made for.")
    max_examples: int | None = Field(None, ge=1, description="First N examples of the split (file order); None: all.")
    engine: LLMConfig = Field(
        default_factory=LLMConfig, description="The engine (model: the top-level one; LoRA rank: train.lora's).")
    max_tokens: int = Field(256, ge=8, description="Most generated tokens of a step that writes a reason.")
    answer_max_tokens: int = Field(32, ge=4, description="Most generated tokens of an answer-only step.")
    answer_mode: Literal[ANSWER_MODES] = Field(  # type: ignore[valid-type]
        "free", description="'free': generate, then map to O*NET; 'constrained': a regex forces an official title; "
        "'choice': a regex forces one of the candidate occupations' titles; 'ranked': the candidate occupations "
        "ranked by the model's likelihood of each title (vLLM backend only).")
    rank_candidates: int = Field(
        32, ge=2, le=200, description="'choice' and 'ranked' modes: candidate occupations per example (the "
        "history's, their Related Occupations and Career Changers moves; 'ranked' adds the generated answer's).")
    base_apart_from_adapters: bool = Field(
        False, description="Base-model predictors, then adapter ones, as two pipeline executions (vLLM's CPU build).")
    adapters: Literal["lora", "merged"] = Field(
        "lora", description="'lora': one engine, the adapter chosen per row; 'merged': each adapter merged into "
        "the base, one engine per model (vLLM's CPU build runs LoRA rows several times slower).")
    one_engine_at_a_time: bool = Field(
        False, description="A pipeline with two engine stages (two-step predictors; 'ranked' with a reason): the "
        "first runs to the end before the second's engine starts (one engine in memory at a time, instead of both "
        "streaming side by side).")
    top_k: int = Field(10, ge=1, le=100, description="Length of each ranked list.")
    nearest_min_score: float = Field(
        0.6, ge=0, le=1, description="Least score for an unmapped answer's nearest title (below: the last job).")
    judge_reasons: bool = Field(
        True, description="Judge (reasons.judge) the generated test reasons; the report relates scores to accuracy.")
    judge_max_examples: int | None = Field(None, ge=1, description="Judge the first N per predictor (None: all).")

    @model_validator(mode="after")
    def _ranked_needs_vllm(self) -> PredictConfig:
        for arm, source in REASON_SWAPS.items():
            if arm in self.predictors and source not in self.predictors:
                raise ValueError(f"predict.predictors: {arm} takes the reasons {source} writes; add {source}")
            if arm in self.predictors and self.answer_mode == "ranked":
                raise ValueError(f"predict.predictors: {arm} is not available with answer_mode 'ranked'")
        if self.answer_mode == "ranked" and self.engine.backend != "vllm":
            raise ValueError("answer_mode 'ranked' scores titles with vLLM prompt logprobs: it needs "
                             "predict.engine.backend 'vllm'")
        if self.answer_mode == "ranked" and self.adapters != "merged":
            # vLLM 0.32's LoRA logits layer maps LoRA only to sampled tokens, so prompt logprobs on an
            # engine with LoRA on kill it (vllm-project/vllm#29955); merged adapters need no LoRA
            raise ValueError("answer_mode 'ranked' needs predict.adapters 'merged': vLLM 0.32 cannot compute "
                             "prompt logprobs on an engine with LoRA on (vllm-project/vllm#29955)")
        return self


class ServeConfig(_Section):
    """The Serve application (`jobpred serve`): vLLM replicas on ray.serve.llm behind a domain ingress.

    Prediction settings (max_tokens, answer_max_tokens, answer_mode, top_k, nearest_min_score) are the
    ``predict`` section's, so a predictor means the same online as in batch prediction.
    """

    host: str = Field("127.0.0.1", description="Address the HTTP proxy binds (0.0.0.0 exposes it; put TLS in front).")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the Serve proxy.")
    proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        "EveryNode", description="Where Serve runs HTTP proxies: every node (Serve's default; put a load "
        "balancer in front) or only the head (one address; also what several nodes on one machine need).")
    engine: LLMConfig | None = Field(
        None, description="Engine replica settings (model ignored: the top-level one); None: predict.engine's.")
    min_replicas: int = Field(1, ge=0, description="Fewest engine replicas (0 scales to zero when idle).")
    max_replicas: int = Field(1, ge=1, description="Most engine replicas the autoscaler may start.")
    initial_replicas: int | None = Field(None, ge=0, description="Engine replicas at start (None: min_replicas).")
    target_ongoing_requests: float = Field(
        16, gt=0, description="Autoscaling target: in-flight requests per engine replica before another starts.")
    max_ongoing_requests: int = Field(
        64, ge=1, description="Requests one engine replica accepts at once; more wait in the router's queue.")
    replica_num_cpus: float = Field(1.0, gt=0, description="Logical CPUs of a replica's actor (engine bundles extra).")
    ingress_replicas: int = Field(1, ge=1, description="Replicas of the domain ingress (auth, validation, ranking).")
    ingress_num_cpus: float = Field(1.0, gt=0, description="Logical CPUs of each ingress replica.")
    max_adapters_per_replica: int = Field(4, ge=1, description="LoRA adapters loaded per replica (vLLM max_loras).")
    api_keys_file: str | None = Field(
        None, description="File of API keys, one a line ('#' comments); also $JOBPRED_API_KEYS (comma-"
        "separated). `jobpred serve` refuses to start with none unless --insecure.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body (larger: 413 before parsing).")
    request_timeout_s: float = Field(60.0, gt=0, description="Per-request time limit in the ingress (then 504).")
    max_batch_size: int = Field(32, ge=1, description="Most career records in one /v1/predict request.")
    default_predictor: Literal[PREDICTOR_NAMES] | None = Field(  # type: ignore[valid-type]
        None, description="Predictor of requests that name none (None: 'joint' if trained, else 'zero-shot').")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature of /v1/predict (0: greedy, repeatable).")
    related_k: int = Field(10, ge=0, le=20, description="O*NET Related Occupations listed with each answer.")
    worker_niceness: int | None = Field(
        0, ge=0, le=19, description="Unix niceness of the engine and ingress replicas (None: Ray's default, 15).")

    @model_validator(mode="after")
    def _replicas(self) -> ServeConfig:
        if self.default_predictor in REASON_SWAPS:
            raise ValueError(f"serve.default_predictor: {self.default_predictor} is an evaluation arm, not served")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"serve.min_replicas ({self.min_replicas}) > serve.max_replicas ({self.max_replicas})")
        return self


class JobpredConfig(_Section):
    """The whole pipeline's configuration (one YAML file)."""

    name: str = Field("local", description="Preset name, recorded in the manifest.")
    model: str = Field("smollm2-135m-instruct", description="Base model (embedded default, HF directory or hub id).")
    history_format: Literal["compact", "json"] = Field(
        "compact", description="How a history is written into every prompt (teacher, judge, training, "
        "prediction, Serve): 'compact', one JSON list per entry under a header line; 'json', the paper's "
        "JSON objects (keys repeated on every entry, about twice the tokens).")
    ray: RayConfig = Field(default_factory=RayConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)
    reasons: ReasonsConfig = Field(default_factory=ReasonsConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @property
    def adapter_base(self) -> str:
        """The base model the LoRA adapters are trained on, and so loaded on to predict and to serve."""
        return self.train.model or self.model


def _apply_override(data: dict, dotted: str) -> None:
    if "=" not in dotted:
        raise ValueError(f"override {dotted!r} is not key.path=value")
    key, raw = dotted.split("=", 1)
    value = yaml.safe_load(raw) if raw else None
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted!r}: {part} is not a section")
    node[parts[-1]] = value


def _read_preset(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A preset's mapping; ``base: other.yaml`` (relative to the preset's folder) is read first and the
    preset's own keys are merged over it, section by section -- a small preset says only what it changes."""
    if path in seen:
        raise ValueError(f"{path}: `base` presets form a loop ({' -> '.join(map(str, seen + (path,)))})")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    return _merge(_read_preset((path.parent / base).resolve(), seen + (path,)), data)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _unshared(node):
    """A copy in which no mapping or list appears twice: YAML aliases and ``<<: *anchor`` merges share nested
    values, and an override of one (``reasons.judge.engine_kwargs.x=1``) must leave the other alone."""
    if isinstance(node, dict):
        return {key: _unshared(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_unshared(value) for value in node]
    return node


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> JobpredConfig:
    """Load a YAML preset (or the defaults when ``path`` is None) and apply ``a.b=value`` overrides."""
    data: dict = {}
    if path is not None:
        data = _unshared(_read_preset(Path(path).resolve()))
    for item in overrides or []:
        _apply_override(data, item)
    return JobpredConfig.model_validate(data)
