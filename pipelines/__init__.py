"""Thin Ray job entry points, one per stage: `python -m pipelines.<stage> --config ... --run ...`."""
