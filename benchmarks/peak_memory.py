"""Peak memory of a command and every process it starts (Ray's raylet and workers, vLLM engine processes).

    python -m benchmarks.peak_memory -- make demo       # runs the command, samples until it exits
    python -m benchmarks.peak_memory --pid 2346         # samples a process that is already running

`/usr/bin/time -v` reports the largest single process, not the tree: a `jobpred run` is a driver, Ray's
GCS and raylet, a dozen workers and vLLM engine processes, which share Ray's object store (/dev/shm) and
the model's pages. The sampler (:class:`benchmarks.common.PeakMemory`, the suite's own) sums their PSS,
which counts a shared page once. Processes that leave the tree (a daemon Ray re-parents) are not seen: run
it with a local Ray that the command starts.

Prints one JSON line at the end: the peak (GiB), when it happened, the largest processes then, the peak of
system-wide used memory (MemTotal - MemAvailable) over the baseline before the start, and the command's
exit status.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

import psutil

from benchmarks.common import PeakMemory


def _used() -> int:
    vm = psutil.virtual_memory()
    return vm.total - vm.available


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pid", type=int, help="sample this running process (and its descendants) instead")
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if (args.pid is None) == (not cmd):
        ap.error("give a command after -- or --pid, not both")
    if args.pid is not None and not psutil.pid_exists(args.pid):
        ap.error(f"--pid {args.pid}: no such process")
    baseline, system_peak, stop = _used(), [0], threading.Event()

    def watch_system() -> None:
        while not stop.wait(args.interval):
            system_peak[0] = max(system_peak[0], _used() - baseline)

    watcher = threading.Thread(target=watch_system, daemon=True)
    watcher.start()
    start, result = time.monotonic(), {}
    if args.pid is not None:
        root = psutil.Process(args.pid)
        with PeakMemory(args.interval, pid=args.pid) as peak:
            while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
                time.sleep(args.interval)
        result["pid"] = args.pid
    else:
        child = subprocess.Popen(cmd)
        with PeakMemory(args.interval, pid=child.pid) as peak:
            child.wait()
        result.update(command=" ".join(cmd), returncode=child.returncode)
    stop.set()
    watcher.join()
    result = {"peak_pss_gib": peak.peak_gb, "at_s": peak.peak_at_s, "largest_at_peak": peak.largest_at_peak,
              "peak_system_used_over_baseline_gib": round(system_peak[0] / 2**30, 2),
              "seconds": round(time.monotonic() - start, 1), **result}
    print(json.dumps(result), flush=True)
    return result.get("returncode") or 0


if __name__ == "__main__":
    sys.exit(main())
