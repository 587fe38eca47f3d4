"""Fixtures for the training tests: a prepared synthetic run with hand-written oracle and DPO tables, and a
tiny random Llama that shares the default model's tokenizer and chat template (trains in milliseconds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from jobpred.config import PrepareConfig, SynthConfig, load_config
from jobpred.data.prepare import prepare
from jobpred.data.synth import write_synthetic
from jobpred.llm.prompts import joint_output
from jobpred.rundir import RunDir
from jobpred.schema import DPO_PAIRS_SCHEMA, ORACLE_SCHEMA

REPO = Path(__file__).resolve().parents[1]
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "generation_config.json")


def tiny_model(out: Path) -> Path:
    """A 2-layer random Llama (hidden 64) with SmolLM2's tokenizer, saved as a plain HF directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from jobpred.models import DEFAULT_MODEL, resolve_model

    src = Path(resolve_model(DEFAULT_MODEL))
    base = json.loads((src / "config.json").read_text())
    config = LlamaConfig(vocab_size=base["vocab_size"], hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=base.get("bos_token_id"),
                         eos_token_id=base.get("eos_token_id"), pad_token_id=base.get("pad_token_id"))
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    for name in _TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, out / name)
    return out


def _reason(history: list[dict]) -> str:
    last = history[-1]
    first = history[0]
    return (f"The person started as {first['onet_title'] or first['title']} and now works as "
            f"{last['onet_title'] or last['title']} since {last['start']}. They stay in the same field.")


def oracle_run(tmp: Path, persons: int = 40, oracle_rows: int = 8, seed: int = 3) -> Path:
    """A prepared run directory plus ``reasons/oracle.parquet`` and ``reasons/dpo_pairs.parquet`` written by
    hand (schemas of jobpred.schema), registered as the ``reasons`` stage."""
    records = tmp / "persons.jsonl"
    write_synthetic(SynthConfig(persons=persons, seed=seed, min_jobs=2, max_jobs=4), records, progress=False)
    run = tmp / "run"
    prepare(records, run, PrepareConfig(engine="local"))
    train = pl.read_parquet(run / "examples" / "train.parquet").sort("history_chars").head(oracle_rows)
    oracle, pairs = [], []
    for ex in train.iter_rows(named=True):
        reason = _reason(ex["history"])
        common = {"teacher_model": "test", "teacher_prompt_version": "candidate-joint/v1", "judge_model": "test",
                  "selection": "{}"}
        oracle.append({"example_id": ex["example_id"], "candidate_id": f"{ex['example_id']}/plain/0",
                       "variant": "plain", "reason": reason, "answer": ex["target_title"],
                       "answer_code": ex["target_code"], "answer_correct": True, "target_code": ex["target_code"],
                       "target_title": ex["target_title"], "factuality": 5, "coherence": 5, "utility": 5,
                       "combined": 5.0, "teacher_sampling": "{}", "judge_prompt_versions": "", **common})
        pairs.append({"example_id": ex["example_id"], "chosen_candidate_id": f"{ex['example_id']}/plain/0",
                      "rejected_candidate_id": f"{ex['example_id']}/plain/1",
                      "chosen_output": joint_output(reason, ex["target_title"]),
                      "rejected_output": joint_output("They like many things and may do anything.", "Chief Executives"),
                      "chosen_combined": 5.0, "rejected_combined": 1.5, "margin": 3.5, **common})
    (run / "reasons").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(oracle, schema=ORACLE_SCHEMA), run / "reasons" / "oracle.parquet")
    pq.write_table(pa.Table.from_pylist(pairs, schema=DPO_PAIRS_SCHEMA), run / "reasons" / "dpo_pairs.parquet")
    RunDir(run).record_stage("reasons", outputs={"oracle": "reasons/oracle.parquet",
                                                 "dpo_pairs": "reasons/dpo_pairs.parquet"})
    return run


def tiny_config(model: Path, *overrides: str):
    """configs/local.yaml on the tiny model, sized for seconds per adapter."""
    return load_config(REPO / "configs" / "local.yaml", [
        f"model={model}", "train.max_length=640", "train.lr=3e-3", "train.warmup_ratio=0", "train.epochs=3",
        "train.batch_size=2", "train.checkpoint_every=4", "train.dpo.lr=1e-3", "train.dpo.epochs=3", *overrides])
