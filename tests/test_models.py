"""The default model: materialised from the PyPI GGUF, loaded by transformers and by vLLM with equal outputs."""

import json
import os

import pytest

from jobpred.models import DEFAULT_MODEL, default_model_dir, resolve_model

PROMPTS = [
    "A registered nurse with five years in intensive care wants a new role. Name one job title.",
    "List three skills a truck driver needs.",
]


def test_resolve_passes_other_models_through(tmp_path):
    assert resolve_model("Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_default_model_is_a_plain_hf_directory():
    path = resolve_model(DEFAULT_MODEL)
    assert path == str(default_model_dir())
    config = json.loads((default_model_dir() / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config
    assert (default_model_dir() / "model.safetensors").stat().st_size > 200e6
    assert (default_model_dir() / "tokenizer.json").exists()


def _chat(tokenizer, prompt):
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=False)


@pytest.fixture(scope="module")
def transformers_greedy():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(DEFAULT_MODEL)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    outs = []
    for prompt in PROMPTS:
        ids = tok(_chat(tok, prompt), return_tensors="pt", add_special_tokens=False)
        gen = model.generate(**ids, max_new_tokens=24, do_sample=False)
        outs.append(gen[0, ids["input_ids"].shape[1]:].tolist())
    return tok, outs


def test_transformers_answers_in_english(transformers_greedy):
    tok, outs = transformers_greedy
    text = tok.decode(outs[0], skip_special_tokens=True)
    assert len(text.split()) >= 2 and text.isascii()


@pytest.mark.integration
def test_vllm_greedy_matches_transformers(transformers_greedy):
    """vLLM's CPU build loads the same directory and produces the same greedy tokens (parity)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    tok, expected = transformers_greedy
    llm = LLM(model=resolve_model(DEFAULT_MODEL), dtype="float32", max_model_len=512, seed=0,
              enforce_eager=True)
    outs = llm.generate([_chat(tok, p) for p in PROMPTS],
                        SamplingParams(temperature=0, max_tokens=24))
    got = [list(o.outputs[0].token_ids) for o in outs]
    llm.llm_engine.engine_core.shutdown()  # stop the engine process now, not at interpreter exit
    # fp32 on both sides; kernels still differ (fused ops, accumulation order), so a near-tie late in a
    # sequence may flip: require a long common greedy prefix rather than the whole string.
    for g, e in zip(got, expected):
        common = next((i for i, (a, b) in enumerate(zip(g, e)) if a != b), min(len(g), len(e)))
        assert common >= 12, (tok.decode(g), tok.decode(e))
