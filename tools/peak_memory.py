"""Peak memory of a command and every process it starts (Ray's raylet and workers, vLLM engine processes).

    python tools/peak_memory.py -- make demo            # runs the command, samples until it exits
    python tools/peak_memory.py --pid 2346              # samples a process that is already running

`/usr/bin/time -v` reports the largest single process, not the tree: a `jobpred run` is a driver, Ray's
GCS and raylet, a dozen workers and a vLLM engine process, which share Ray's object store (/dev/shm) and
the model's pages. Summing RSS would count those shared pages once per process; summing PSS (each shared
page divided among the processes that map it, from /proc/PID/smaps_rollup) counts them once. Processes
that leave the tree (a daemon Ray re-parents) are not seen: run with a local Ray that the command starts.

Prints one JSON line when the command ends: the peak of the tree's summed PSS, when it happened, how many
processes were in the tree then and the largest of them, the peak of system-wide used memory (MemTotal - MemAvailable) over the
baseline before the start, and the command's exit status.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import psutil


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_pss(root: psutil.Process) -> list[tuple[int, str]]:
    """(PSS in bytes, name) of ``root`` and each of its descendants, largest first; vanished ones skipped."""
    found = []
    for proc in _tree(root):
        try:
            found.append((proc.memory_full_info().pss, proc.name()))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return sorted(found, reverse=True)


def used_memory() -> int:
    vm = psutil.virtual_memory()
    return vm.total - vm.available


def sample(root: psutil.Process, interval: float, done) -> dict:
    """Sample until ``done()``; the peaks."""
    start, baseline = time.monotonic(), used_memory()
    peak = {"peak_pss_gib": 0.0, "at_s": 0.0, "processes": 0, "largest_at_peak": [],
            "peak_system_used_over_baseline_gib": 0.0}
    while not done():
        procs = tree_pss(root)
        pss = sum(p for p, _ in procs)
        if pss / 2**30 > peak["peak_pss_gib"]:
            peak.update(peak_pss_gib=round(pss / 2**30, 2), at_s=round(time.monotonic() - start, 1),
                        processes=len(procs), largest_at_peak=[[name, round(p / 2**30, 2)] for p, name in procs[:6]])
        over = (used_memory() - baseline) / 2**30
        peak["peak_system_used_over_baseline_gib"] = round(max(peak["peak_system_used_over_baseline_gib"], over), 2)
        time.sleep(interval)
    peak["seconds"] = round(time.monotonic() - start, 1)
    return peak


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pid", type=int, help="sample this running process (and its descendants) instead")
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if (args.pid is None) == (not cmd):
        ap.error("give a command after -- or --pid, not both")
    if args.pid is not None:
        root = psutil.Process(args.pid)
        result = sample(root, args.interval, lambda: not root.is_running() or root.status() == psutil.STATUS_ZOMBIE)
        result["pid"] = args.pid
    else:
        child = subprocess.Popen(cmd)
        result = sample(psutil.Process(child.pid), args.interval, lambda: child.poll() is not None)
        result.update(command=" ".join(cmd), returncode=child.returncode)
    print(json.dumps(result), flush=True)
    return result.get("returncode") or 0


if __name__ == "__main__":
    sys.exit(main())
