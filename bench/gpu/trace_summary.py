#!/usr/bin/env python3
"""Summarises the last step of a GPU kernel trace: Nsight Systems' (nsys stats --report
cuda_gpu_trace --format csv) or bench/gpu/cupti_trace.c's. The step is the kernels from the last
one whose name matches --start (a step's first kernel), or else after the last idle gap of more
than --gap-ms, grouped by kernel name.

For each group: launches, summed duration, and the time it adds to the step's critical path:
a kernel's end minus the later of its start and the previous kernel's end (kernels launched as
programmatic dependents overlap their predecessors, so durations alone overcount).

Usage: trace_summary.py TRACE.csv [--start REGEX] [--gap-ms 1.0] [--top 20]
"""
import argparse
import csv
import re
import sys


def column(header, prefix):
    for i, h in enumerate(header):
        if h.strip().startswith(prefix):
            return i
    sys.exit(f"trace_summary: no column starting with {prefix!r} in {header}")


def short(name):
    """Template arguments and parameter lists make names unreadable: keep the function's name and
    its first template arguments."""
    name = re.sub(r"\(.*\)$", "", name)
    name = re.sub(r"^void ", "", name)
    return name[:90]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--start", default=None)
    ap.add_argument("--gap-ms", type=float, default=1.0)
    ap.add_argument("--top", type=int, default=20)
    a = ap.parse_args()
    with open(a.trace, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        sys.exit("trace_summary: empty trace")
    header, rows = rows[0], rows[1:]
    ts, td, tn = column(header, "Start"), column(header, "Duration"), column(header, "Name")
    kern = []
    for r in rows:
        if len(r) <= max(ts, td, tn) or "[CUDA" in r[tn]:  # memcpy / memset rows
            continue
        kern.append((int(float(r[ts])), int(float(r[td])), r[tn]))
    kern.sort()
    if not kern:
        sys.exit("trace_summary: no kernels")
    first = 0
    end = kern[0][0] + kern[0][1]
    for i in range(1, len(kern)):
        if a.start is None and kern[i][0] - end > a.gap_ms * 1e6:
            first = i
        end = max(end, kern[i][0] + kern[i][1])
    if a.start is not None:
        hits = [i for i, k in enumerate(kern) if re.search(a.start, k[2])]
        if not hits:
            sys.exit(f"trace_summary: no kernel matches {a.start!r}")
        first = hits[-1]
    step = kern[first:]
    t0 = step[0][0]
    t1 = max(s + d for s, d, _ in step)
    groups = {}
    prev_end = t0
    for s, d, n in step:
        e = s + d
        added = max(0, e - max(s, prev_end))
        prev_end = max(prev_end, e)
        g = groups.setdefault(short(n), [0, 0, 0])
        g[0] += 1
        g[1] += d
        g[2] += added
    print(f"last step: {len(step)} kernels, {(t1 - t0) / 1e6:.3f} ms from the first start to the last end")
    idle = (t1 - t0) - sum(g[2] for g in groups.values())
    print(f"no kernel running: {idle / 1e6:.3f} ms")
    print(f"{'kernel':92s} {'n':>5s} {'sum ms':>8s} {'path ms':>8s}")
    for n, (c, d, p) in sorted(groups.items(), key=lambda kv: -kv[1][2])[: a.top]:
        print(f"{n:92s} {c:5d} {d / 1e6:8.3f} {p / 1e6:8.3f}")


if __name__ == "__main__":
    main()
