"""Shared bits of the benchmarks: the machine's description, peak memory of a process tree, results files."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
CONFIG = Path(os.environ.get("JOBPRED_BENCH_CONFIG") or REPO / "configs" / "local.yaml")
"""The config whose engine, training and serving settings the benchmarks use: configs/local.yaml, or
$JOBPRED_BENCH_CONFIG (``python -m benchmarks --config configs/gpu-cluster.yaml`` sets it)."""
RESULTS = Path(os.environ.get("JOBPRED_BENCH_RESULTS") or Path(__file__).parent / "results")
"""Where results files go: benchmarks/results, or $JOBPRED_BENCH_RESULTS (the suite's own test uses a temporary one)."""


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "os": platform.platform(terse=True)}


class PeakMemory:
    """Samples the proportional set size (PSS: shared pages split between sharers, so Ray's shared-memory
    object store is not counted once per worker) of a process and all its descendants -- Ray workers,
    raylet, GCS, vLLM engine processes -- and keeps the peak of the sum, with the largest processes at that
    moment. ``pid``: the root (None: this process). Use as a context manager."""

    def __init__(self, interval: float = 1.0, pid: int | None = None) -> None:
        self.interval, self.peak_bytes, self.pid = interval, 0, pid
        self.largest_at_peak: list[tuple[str, float]] = []  # (process name, GiB), largest first
        self.peak_at_s = 0.0
        self._stop = threading.Event()

    def _sample(self) -> list[tuple[int, str]]:
        root = psutil.Process(self.pid)
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        found = []
        for p in procs:
            try:
                found.append((p.memory_full_info().pss, p.name()))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return sorted(found, reverse=True)

    def _loop(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            try:
                procs = self._sample()
            except psutil.NoSuchProcess:  # the root is gone
                return
            total = sum(pss for pss, _ in procs)
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_at_s = total, round(time.monotonic() - start, 1)
                self.largest_at_peak = [(name, round(pss / 2**30, 2)) for pss, name in procs[:6]]
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gb(self) -> float:
        """The peak in GiB (the suite's tables say GB for it)."""
        return round(self.peak_bytes / 2**30, 2)


def bench_config(overrides: list[str] | tuple[str, ...] = ()):
    """:data:`CONFIG` loaded with dotted overrides (a :class:`jobpred.config.JobpredConfig`)."""
    from jobpred.config import load_config

    return load_config(CONFIG, list(overrides))


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = _dt.date.today().isoformat()
    host = platform.node().split(".")[0] or "machine"
    path = RESULTS / f"{stamp}-{name}-{os.cpu_count()}cpu.json"
    payload = {"benchmark": name, "date": stamp, "host": host, "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


class LoadAverage:
    """Samples the 1-minute load average while a measurement runs (mean and max). On this shared 2-core
    machine a mean well above 2 means other jobs competed for the cores: that measurement is disturbed."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval, self.samples = interval, []
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.interval)

    def __enter__(self) -> LoadAverage:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        return {"load_mean": round(sum(self.samples) / max(1, len(self.samples)), 1),
                "load_max": round(max(self.samples, default=0.0), 1)}


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def run_child(module: str, argv: list[str]) -> tuple[object, dict]:
    """Run ``python -m module *argv`` (a benchmark's ``--child`` mode) in a fresh process: its ``RESULT <json>``
    line and the load average while it ran. Exits with the child's stderr tail when it printed no result."""
    import subprocess
    import sys

    with LoadAverage() as load:
        out = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{module} {' '.join(argv[:2])} failed:\n{out.stderr[-4000:]}")
    return json.loads(line[7:]), load.summary()
