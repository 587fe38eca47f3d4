"""Typed configuration: one pydantic model per pipeline section, YAML presets in ``configs/``, dotted overrides.

    cfg = load_config("configs/local.yaml", overrides=["prepare.seed=7", "synth.persons=500"])
    cfg.prepare.split.test   # 0.1

Every field is documented; unknown keys are errors (a typo in a YAML file must not be ignored). Stages
that later issues add (reasons, train, evaluate, serve) get their own section class here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RayConfig(_Section):
    address: str | None = Field(
        None, description="Ray cluster address ('auto' inside `ray job submit`); None starts a local Ray."
    )
    num_cpus: int | None = Field(
        None, description="Logical CPUs for a local Ray (None: the machine's cores). Ignored with an address."
    )
    object_store_memory_mb: int | None = Field(
        None, description="Object store size for a local Ray, MiB (None: Ray's default, 30% of RAM)."
    )


class SynthConfig(_Section):
    persons: int = Field(1000, ge=1, description="How many synthetic persons to write.")
    seed: int = Field(0, description="Random seed; the same seed gives byte-identical output.")
    partition_size: int = Field(
        50_000, ge=1, description="Persons generated per partition (bounds memory: 1M persons stream)."
    )
    min_jobs: int = Field(2, ge=1, description="Fewest jobs per person.")
    max_jobs: int = Field(8, ge=1, description="Most jobs per person (before the occasional long career).")
    long_career_rate: float = Field(
        0.0005, ge=0, le=1, description="Share of persons with a very long history (60-120 jobs)."
    )
    first_year_min: int = Field(1975, description="Earliest year a career may start.")
    last_year: int = Field(2025, description="No job starts after this year.")
    title_noise: float = Field(
        0.35, ge=0, le=1, description="Probability that a raw title gets people-style noise (Sr., II, case)."
    )
    typo_rate: float = Field(0.01, ge=0, le=1, description="Probability that a raw title gets a typo.")
    code_rate: float = Field(
        1.0, ge=0, le=1, description="Share of experiences that carry their onet_code (the rest: title only)."
    )

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
    engine: Literal["ray", "local"] = Field(
        "ray", description="'ray': Ray Data over file chunks (local or cluster); 'local': one process."
    )
    chunk_mb: float = Field(8.0, gt=0, description="Input bytes per Ray Data block of JSON Lines.")
    concurrency: int | None = Field(
        None, ge=1, description="Parallel prepare actors (None: Ray's CPUs, at most 8)."
    )
    seed: int = Field(0, description="Seed of the person-level split (a hash of seed and person_id).")
    split: SplitConfig = Field(default_factory=SplitConfig)
    history_max_jobs: int = Field(
        30, ge=1, description="Most history jobs kept per example: the most recent ones."
    )
    history_max_chars: int = Field(
        6000,
        ge=200,
        description="Character budget of a serialised history (~4 chars per token: 6000 ~ 1.5k tokens). "
        "The oldest jobs are dropped until it fits; `truncated_jobs` records how many.",
    )
    min_match_score: float = Field(
        0.86, ge=0, le=1, description="Title-normaliser score below which a title is 'no match'."
    )


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
    threads: int | None = Field(
        1, ge=1, description="torch CPU threads for in-process training and ranking (None: torch's default). "
        "One is fastest for a model this small; more only pay off with much larger hidden sizes.",
    )


class BaselinesConfig(_Section):
    """Baseline predictors and how they are scored (`jobpred evaluate --baselines-only`)."""

    predictors: list[Literal["popular", "stay", "markov", "gru"]] = Field(
        default_factory=lambda: list(BASELINES),
        description="Which baselines to run: popular (most frequent next occupation), stay (the last "
        "occupation again), markov (first-order Markov over O*NET codes), gru (supervised sequence model).",
    )
    split: Literal["val", "test"] = Field("test", description="The split predictions are made for.")
    top_k: int = Field(10, ge=1, le=100, description="Length of each predictor's ranked list.")
    markov_alpha: float = Field(
        10.0, ge=0, description="Pseudo-counts of the O*NET prior added to each Markov state's transitions."
    )
    markov_changers_weight: float = Field(
        0.5, ge=0, le=1,
        description="Share of the prior's move mass on the Career Changers Matrix (rest: Related Occupations).",
    )
    gru: SequenceModelConfig = Field(default_factory=SequenceModelConfig)
    use_ray_train: bool = Field(
        False, description="Train the GRU with Ray Train's TorchTrainer (for large data) instead of in-process."
    )
    ray_train_workers: int = Field(2, ge=1, description="Ray Train CPU workers when use_ray_train is on.")
    bootstrap_samples: int = Field(
        1000, ge=0, description="Bootstrap resamples for the report's 95% confidence intervals (0: none)."
    )
    bootstrap_seed: int = Field(0, description="Seed of the bootstrap resamples.")


class JobpredConfig(_Section):
    """The whole pipeline's configuration (one YAML file)."""

    name: str = Field("local", description="Preset name, recorded in the manifest.")
    model: str = Field(
        "smollm2-135m-instruct",
        description="Base model: the embedded default, a local HF directory, or a hub id (cluster).",
    )
    ray: RayConfig = Field(default_factory=RayConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)


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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> JobpredConfig:
    """Load a YAML preset (or the defaults when ``path`` is None) and apply ``a.b=value`` overrides."""
    data: dict = {}
    if path is not None:
        text = Path(path).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: top level must be a mapping")
    for item in overrides or []:
        _apply_override(data, item)
    return JobpredConfig.model_validate(data)
