#!/usr/bin/env python3
"""Summarises a GPU kernel trace: Nsight Systems' (nsys stats --report cuda_gpu_trace --format
csv) or bench/gpu/cupti_trace.c's.

By default, the last step: the kernels from the last one whose name matches --start (a step's
first kernel), or else after the last idle gap of more than --gap-ms, grouped by kernel name.
With --all-steps, every step (each starting at a kernel matching --start), in two classes: steps
with prefill rows (a kernel matching --prefill runs in them) and decode-only steps; per class the
steps' count, their mean length, and per kernel group the mean time it adds per step, plus the
time between steps with no kernel running.

For each group: launches, summed duration, and the time it adds to the step's critical path:
a kernel's end minus the later of its start and the previous kernel's end (kernels launched as
programmatic dependents overlap their predecessors, so durations alone overcount).

Usage: trace_summary.py TRACE.csv [--start REGEX] [--gap-ms 1.0] [--top 20]
       trace_summary.py TRACE.csv --all-steps --start REGEX [--prefill REGEX] [--top 20]
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


def read_kernels(path):
    with open(path, newline="") as f:
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
    return kern


def charge(step, groups):
    """Adds each kernel of step to groups[name] = [launches, summed duration, time added to the
    path]; returns (first start, last end)."""
    t0 = step[0][0]
    prev_end = t0
    for s, d, n in step:
        e = s + d
        added = max(0, e - max(s, prev_end))
        prev_end = max(prev_end, e)
        g = groups.setdefault(short(n), [0, 0, 0])
        g[0] += 1
        g[1] += d
        g[2] += added
    return t0, prev_end


def print_groups(groups, top, per=1):
    print(f"{'kernel':92s} {'n':>7s} {'sum ms':>9s} {'path ms':>9s}")
    for n, (c, d, p) in sorted(groups.items(), key=lambda kv: -kv[1][2])[:top]:
        print(f"{n:92s} {c / per:7.1f} {d / 1e6 / per:9.3f} {p / 1e6 / per:9.3f}")


def last_step(kern, a):
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
    groups = {}
    t0, t1 = charge(kern[first:], groups)
    print(f"last step: {len(kern) - first} kernels, {(t1 - t0) / 1e6:.3f} ms from the first start to the last end")
    idle = (t1 - t0) - sum(g[2] for g in groups.values())
    print(f"no kernel running: {idle / 1e6:.3f} ms")
    print_groups(groups, a.top)


def all_steps(kern, a):
    starts = [i for i, k in enumerate(kern) if re.search(a.start, k[2])]
    if not starts:
        sys.exit(f"trace_summary: no kernel matches {a.start!r}")
    classes = {}  # name -> [steps, summed length, groups, idle inside, gap before]
    prev_end = None
    for j, i in enumerate(starts):
        step = kern[i:starts[j + 1] if j + 1 < len(starts) else len(kern)]
        kind = "with prefill rows" if any(re.search(a.prefill, k[2]) for k in step) else "decode only"
        c = classes.setdefault(kind, [0, 0, {}, 0, 0])
        added_before = sum(g[2] for g in c[2].values())
        t0, t1 = charge(step, c[2])
        c[0] += 1
        c[1] += t1 - t0
        c[3] += (t1 - t0) - (sum(g[2] for g in c[2].values()) - added_before)
        if prev_end is not None:
            c[4] += max(0, t0 - prev_end)
        prev_end = t1
    span = (prev_end - kern[starts[0]][0]) / 1e6
    print(f"{len(starts)} steps over {span:.1f} ms (first step start to last step end)")
    for kind, (n, length, groups, idle, gap) in classes.items():
        print(f"\n{kind}: {n} steps, {length / 1e6:.1f} ms in all, {length / 1e6 / n:.3f} ms a step; "
              f"no kernel running inside a step {idle / 1e6 / n:.3f} ms, before it {gap / 1e6 / n:.3f} ms "
              f"({gap / 1e6:.1f} ms in all); per step:")
        print_groups(groups, a.top, n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--start", default=None)
    ap.add_argument("--gap-ms", type=float, default=1.0)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--all-steps", action="store_true")
    ap.add_argument("--prefill", default="prefill")
    a = ap.parse_args()
    kern = read_kernels(a.trace)
    if a.all_steps:
        if a.start is None:
            sys.exit("trace_summary: --all-steps needs --start")
        all_steps(kern, a)
    else:
        last_step(kern, a)


if __name__ == "__main__":
    main()
