#!/usr/bin/env python3
"""Paired comparison of two builds of a command on a shared machine.

Usage: bench/ab.py BINARY_A BINARY_B PAIRS ARGS...

Runs `BINARY_A ARGS...` and `BINARY_B ARGS...` PAIRS times each, back to
back and in alternating order (A B, B A, A B, ...), output discarded, and
prints the median wall and CPU time (user + system, from wait4) of each and
the median of the per-pair differences B - A, with how many pairs B won.

Why paired: on a shared 2-core VM the speed available to two-threaded work
drifts by tens of percent over minutes; two runs made a fraction of a second
apart see the same conditions, so their difference is steady where separate
series of runs are not. Example (from a project directory):

    bench/ab.py /tmp/weir-old target/release/weir 40 show --format '%{name} %{full-key}' target.bst
"""
import os
import statistics
import sys
import time


def run(binary: str, args: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.execv(binary, [binary] + args)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{binary} failed (status {os.waitstatus_to_exitcode(status)})")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    a, b, pairs, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    runs_a, runs_b = [], []
    for i in range(pairs):
        order = ((a, runs_a), (b, runs_b)) if i % 2 == 0 else ((b, runs_b), (a, runs_a))
        for binary, runs in order:
            runs.append(run(binary, args))
    ms = lambda seconds: seconds * 1000
    for name, runs in (("A", runs_a), ("B", runs_b)):
        print(f"{name}: wall median {ms(statistics.median(r[0] for r in runs)):.1f} ms, "
              f"CPU median {ms(statistics.median(r[1] for r in runs)):.1f} ms")
    wall = [rb[0] - ra[0] for ra, rb in zip(runs_a, runs_b)]
    cpu = [rb[1] - ra[1] for ra, rb in zip(runs_a, runs_b)]
    wins = sum(1 for d in wall if d < 0)
    print(f"B - A per pair: wall median {ms(statistics.median(wall)):+.1f} ms, "
          f"CPU median {ms(statistics.median(cpu)):+.1f} ms; B faster in {wins} of {pairs} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
