"""What each prompt costs before the model writes a token: prompt tokens, and how much of it is a prefix that
every request of that prompt shares (what vLLM's prefix cache can serve instead of recomputing), for each
history rendering (``history_format``: 'compact', the default, against the paper's 'json'), side by side.

Run as:
    python -m benchmarks.bench_prompts [--persons 200]

Histories come from the synthetic generator; tokens are counted with the default model's tokenizer and chat
template, exactly as the engines count them. "shared prefix" is the longest token prefix common to all
prompts of one kind (the same instructions, different people); "share" is its mean fraction of a prompt.
Tokenizer only, no engine: seconds, and the numbers do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import itertools
import os

import numpy as np

from benchmarks.common import machine, markdown_table, write_results


def _histories(persons: int) -> list[tuple[list[dict], list[dict]]]:
    import tempfile
    from pathlib import Path

    import polars as pl

    from jobpred.config import SynthConfig
    from jobpred.data.synth import write_synthetic
    from jobpred.taxonomy import Taxonomy

    tax = Taxonomy.load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "p.jsonl"
        write_synthetic(SynthConfig(persons=persons, seed=7), out, progress=False)
        rows = pl.read_ndjson(out).to_dicts()
    out_rows = []
    for r in rows:
        jobs = [{**j, "onet_title": tax.title(j["onet_code"]) if j.get("onet_code") in tax else None}
                for j in r["experience"][:-1]]  # the last job is the target
        if jobs:
            out_rows.append((r.get("education") or [], jobs))
    return out_rows


def measure(persons: int) -> list[dict]:
    from transformers import AutoTokenizer

    from jobpred.llm import prompts
    from jobpred.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    histories = _histories(persons)
    kinds = {
        "candidate": lambda h: prompts.candidate_messages(h, prefill=True),
        "hinted": lambda h: prompts.candidate_messages(h, hinted_title="Nurse Practitioners", prefill=True),
        "answer": lambda h: prompts.answer_messages(h, prefill=True),
        "reason": prompts.reason_messages,
        "predictor": lambda h, r: prompts.predictor_messages(h, r),
        **{f"judge-{c}": (lambda h, r, c=c: prompts.judge_messages(c, h, r, "Nurse Practitioners"))
           for c in prompts.CRITERIA},
        # the fine-tuned adapters' short prompts (training and prediction)
        "student-joint": lambda h: prompts.student_messages("joint", h),
        "student-reason": lambda h: prompts.student_messages("reason", h),
        "student-predictor": lambda h, r: prompts.student_messages("predict", h, r),
    }
    rows = []
    for (name, build), style in itertools.product(kinds.items(), prompts.HISTORY_FORMATS):
        ids = []
        for education, jobs in histories:
            history = prompts.history_json(education, jobs, style)
            # a reason differs from person to person as the history does
            reason = f"Years as {jobs[-1]['title']} after {jobs[0]['title']} point to more responsibility."
            two = name.endswith("predictor") or name.startswith("judge")
            msgs = build(history, reason) if two else build(history)
            prefill = msgs[-1]["role"] == "assistant"
            out = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=not prefill,
                                          continue_final_message=prefill)
            ids.append(list(out["input_ids"] if hasattr(out, "keys") else out))
        shared = min(len(x) for x in ids)
        for x in ids[1:]:
            shared = next((i for i, (a, b) in enumerate(zip(ids[0][:shared], x[:shared])) if a != b), shared)
        lengths = np.array([len(x) for x in ids])
        rows.append({"prompt": name, "version": prompts.PROMPTS[name.removeprefix("judge-")].tagged(style),
                     "prompts": len(ids), "mean_tokens": round(float(lengths.mean()), 1),
                     "shared_prefix_tokens": shared, "share": round(float((shared / lengths).mean()), 3)})
    json_tokens = {r["prompt"]: r["mean_tokens"] for r in rows if r["version"].endswith("+json")}
    for r in rows:
        r["vs_json"] = round(r["mean_tokens"] / json_tokens[r["prompt"]], 3)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rows = measure(args.persons)
    print(f"machine: {machine()}")
    print(markdown_table(rows))
    print(f"results: {write_results('prompts', {'persons': args.persons, 'rows': rows})}")


if __name__ == "__main__":
    main()
