"""The dtype of the frozen base weights in training (``train.dtype``), resolved where the model is built.

``auto`` is bfloat16 where the hardware computes in it (a GPU, or a CPU whose oneDNN has bf16 kernels: AVX-512
or AMX) and float32 elsewhere. On an AVX2-only CPU torch has no fast bf16 matmul: 0.7 GFLOP/s against 137 in
float32 on one such 2-core machine, so a bf16 base made a LoRA step ~20x slower (bench_train: 7.1 vs 152.1 tokens/s). Resolved on the worker's own
node (torch imported inside: this module is shipped to Ray workers), since nodes of a cluster may differ.
"""

from __future__ import annotations

DTYPES = ("auto", "bfloat16", "float32")


def base_dtype(name: str):
    """``train.dtype`` -> a torch dtype on this machine."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"train.dtype {name!r}: expected one of {DTYPES}")
    if name == "auto":
        native_bf16 = torch.cuda.is_available() or torch.ops.mkldnn._is_mkldnn_bf16_supported()
        name = "bfloat16" if native_bf16 else "float32"
    return getattr(torch, name)
