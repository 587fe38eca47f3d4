"""LoRA adapters merged into the base weights: one plain model per adapter, for engines that serve one model.

    path = merged_model(base_path, "RUN_DIR/adapters/joint", out_root=RUN_DIR / "predict" / "merged")

vLLM's CPU build runs every row of a batch that holds an adapter row at LoRA speed, several times slower
than base-model rows (docs/predict.md). Merged (``W + (alpha/r) B A`` folded into the weights by peft's
``merge_and_unload``), an adapter costs nothing per token; the price is one engine per adapter instead of one
for all. ``predict.adapters: merged`` chooses it for batch prediction; Serve keeps per-request LoRA.

A merged model is cached next to the predictions and rebuilt only when the adapter or the base changed
(a digest of both in ``jobpred_merged.json``); it is written to a temporary sibling and renamed, so an
interrupted merge never leaves half a model behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from jobpred.storage import cache_dir, local_copy, location, publish_files

MARKER = "jobpred_merged.json"


def _digest(base_path: str, adapter_dir: Path) -> str:
    h = hashlib.sha256(str(base_path).encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        h.update((adapter_dir / name).read_bytes())
    return h.hexdigest()[:16]


def merged_model(base_path: str, adapter_dir: str | Path, out_root: str | Path) -> str:
    """The directory of ``adapter_dir`` merged into ``base_path`` (a Hugging Face directory), built on first use.

    With ``out_root`` in a bucket, the merge is done on this node's disk and uploaded (its marker last); the
    URI is returned, and each engine's node downloads the model (ray.data.llm's remote ``model_source``)."""
    adapter, root = location(adapter_dir), location(out_root)
    local_adapter = local_copy(adapter)
    digest = _digest(base_path, local_adapter)
    out = root / adapter.name
    if (out / MARKER).exists() and json.loads((out / MARKER).read_text()).get("digest") == digest:
        return str(out)
    built = _merge(base_path, local_adapter, root if isinstance(root, Path) else cache_dir() / "merged" / digest,
                   digest, adapter)
    if not isinstance(root, Path):
        marker = built / MARKER
        publish_files({p.name: p for p in built.iterdir() if p.is_file() and p != marker}, out)
        (out / MARKER).write_text(marker.read_text())  # last: its presence means the upload is whole
    return str(out)


def _merge(base_path: str, adapter_dir: Path, out_root: Path, digest: str, source) -> Path:
    """Merge on this node's disk into ``out_root / adapter_dir.name`` (a temporary sibling renamed in)."""
    out = out_root / Path(str(source)).name
    marker = out / MARKER
    if marker.exists() and json.loads(marker.read_text()).get("digest") == digest:
        return out
    import torch  # heavy: only when a merge is needed
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)  # merge in fp32, then cast
    dtype = getattr(base.config, "dtype", None) or torch.bfloat16
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.to(dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype))).save_pretrained(
        tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(base_path).save_pretrained(tmp)
    (tmp / MARKER).write_text(json.dumps({"base": str(base_path), "adapter": str(source), "digest": digest},
                                         indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    return out
