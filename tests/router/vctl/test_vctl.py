"""End-to-end test of vctl against vesta-router + 2 `vesta-worker --backend sim` workers.

usage: test_vctl.py BIN_DIR MODEL

Every vctl output is checked against the router's own answers, fetched here with httpx:
/health, /admin/workers, /v1/models and /metrics (parsed by tests/router/cluster.py)."""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from cluster import Cluster, free_port, check, checks_passed  # noqa: E402

BIN, MODEL = sys.argv[1], sys.argv[2]
VCTL = os.path.join(BIN, "vctl")
KEY = "vctl-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}



def vctl(c, *args, key=True, url=None):
    argv = [VCTL, "--url", url or c.url, *(["--api-key", KEY] if key else []), *args]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def ok(c, *args):
    rc, out, err = vctl(c, *args)
    check(rc == 0, f"vctl {args}: rc {rc}, stderr {err}")
    return out


def admin(c):
    r = c.http.get("/admin/workers", headers=AUTH)
    check(r.status_code == 200, r.text)
    return r.json()


def table(out):
    """Rows of a vctl table as dicts keyed by the header (cells hold no spaces here)."""
    lines = [ln for ln in out.splitlines() if ln.strip()]
    head = lines[0].split()
    rows = [ln.split() for ln in lines[1:]]
    for r in rows:
        check(len(r) == len(head), f"row {r} vs header {head}")
    return [dict(zip(head, r)) for r in rows]


def pct(x):
    return f"{100.0 * x:.1f}%"


def hit_rate(w):
    return pct(w["prefix_cache_hits"] / w["prefix_cache_queries"]) if w["prefix_cache_queries"] > 0 else "-"


def settle(c):
    """Waits until the workers are idle and two heartbeats report the same counters."""
    def idle_and_same():
        a = admin(c)["workers"]
        time.sleep(0.3)
        b = admin(c)["workers"]
        strip = [[{k: v for k, v in w.items() if k != "last_seen_ms_ago"} for w in ws] for ws in (a, b)]
        return strip[0] == strip[1] and all(w["num_running"] == 0 and w["num_waiting"] == 0
                                            for w in b)
    Cluster.wait(idle_and_same, 30, "idle workers")


def traffic(c):
    # a shared long prompt: the second request onwards hits the prefix cache of its worker
    prompt = "Vesta serves language models across a cluster of workers. " * 12
    for i in range(4):
        r = c.post("/v1/completions", {"prompt": prompt + str(i), "max_tokens": 3}, headers=AUTH)
        check(r.status_code == 200, r.text)


def test_workers(c):
    settle(c)
    ref = admin(c)
    raw = json.loads(ok(c, "workers", "--json"))
    strip = lambda a: [{k: v for k, v in w.items() if k != "last_seen_ms_ago"} for w in a["workers"]]
    check(raw["policy"] == ref["policy"] and strip(raw) == strip(ref), f"workers --json {raw} vs {ref}")
    rows = table(ok(c, "workers"))
    check([r["ID"] for r in rows] == [w["id"] for w in ref["workers"]], "worker ids in order")
    for r, w in zip(rows, ref["workers"]):
        check(r["STATE"] == w["state"] and r["BACKEND"] == w["backend"] and r["MODEL"] == w["model"],
              f"{r} vs {w}")
        for col, key in [("MAX-LEN", "max_model_len"), ("BLOCK", "block_size"),
                         ("KV-BLOCKS", "num_kv_blocks"), ("INFLIGHT-REQ", "inflight_requests"),
                         ("INFLIGHT-SEQ", "inflight_sequences"), ("RUNNING", "num_running"),
                         ("WAITING", "num_waiting"), ("ROUTED", "routed"), ("DEATHS", "deaths")]:
            check(r[col] == str(w[key]), f"{col}: {r[col]} vs {w[key]}")
        check(r["KV-USAGE"] == pct(w["kv_usage"]), f"kv {r} vs {w}")
        check(r["PREFIX-HIT"] == hit_rate(w), f"hit rate {r} vs {w}")
        check(r["KV-SYNC"] == ("yes" if w["kv_events_synced"] else "no"), "kv sync")
    # the traffic reached a prefix cache: some worker shows a real hit rate
    check(any(r["PREFIX-HIT"] != "-" and r["PREFIX-HIT"] != "0.0%" for r in rows), f"hit rates {rows}")


def test_status(c):
    settle(c)
    ref, health = admin(c), c.http.get("/health").json()
    out = ok(c, "status")
    head, _, rest = out.partition("\n\n")
    check(f"status {health['status']}" in head and f"policy {ref['policy']}" in head, head)
    for k in ("live", "draining", "dead", "left"):
        check(f"{k} {health['workers'][k]}" in head, f"{k} in {head}")
    rows = table(rest)
    check(len(rows) == len(ref["workers"]), "one row per worker")
    for r, w in zip(rows, ref["workers"]):
        check((r["ID"], r["STATE"], r["BACKEND"], r["RUNNING"], r["WAITING"])
              == (w["id"], w["state"], w["backend"], str(w["num_running"]), str(w["num_waiting"])),
              f"{r} vs {w}")
        check(r["KV-USAGE"] == pct(w["kv_usage"]) and r["PREFIX-HIT"] == hit_rate(w), f"{r} vs {w}")
    js = json.loads(ok(c, "status", "--json"))
    check(js["health"] == health and js["version"] == c.http.get("/version").json(), "status --json")
    check([w["id"] for w in js["admin_workers"]["workers"]] == [w["id"] for w in ref["workers"]],
          "status --json workers")


def test_models(c):
    ref = c.http.get("/v1/models", headers=AUTH).json()
    raw = json.loads(ok(c, "models", "--json"))
    nocreated = lambda d: [{k: v for k, v in m.items() if k != "created"} for m in d["data"]]
    check(nocreated(raw) == nocreated(ref), f"models --json {raw} vs {ref}")
    rows = table(ok(c, "models"))
    check([(r["ID"], r["ROOT"], r["PARENT"], r["MAX-MODEL-LEN"], r["OWNED-BY"]) for r in rows]
          == [(m["id"], m["root"], m["parent"] or "-", str(m["max_model_len"]), m["owned_by"]) for m in ref["data"]],
          f"models table {rows}")
    # adapters: the cards with a parent (the router runs with two --lora-modules)
    rows = table(ok(c, "adapters"))
    check([(r["ID"], r["ROOT"], r["PARENT"]) for r in rows] == [("sql", "/adapters/sql", MODEL),
                                                               ("chat", "/adapters/chat", MODEL)],
          f"adapters table {rows}")
    raw = json.loads(ok(c, "adapters", "--json"))
    check([m["id"] for m in raw] == ["sql", "chat"], f"adapters --json {raw}")


def labels_key(labels):
    return frozenset(labels.items())


def test_metrics(c):
    settle(c)
    before = c.metrics()
    raw = json.loads(ok(c, "metrics", "--json"))
    after = c.metrics()
    got = {(s["name"], labels_key(s["labels"])): s["value"] for s in raw}
    check(set(got) == set(before) == set(after), "the same series as the router's text")
    for k, v in got.items():  # counters only grow; gauges of an idle cluster stay put
        lo, hi = min(before[k], after[k]), max(before[k], after[k])
        check(lo <= v <= hi, f"{k}: {v} not in [{lo}, {hi}]")

    pattern = r"num_requests_running|prompt_tokens_total"
    rows = table(ok(c, "metrics", "--grep", pattern))
    ref = {k: v for k, v in after.items() if re.search(pattern, k[0])}
    check(len(rows) == len(ref) and len(rows) >= 3, f"--grep rows {rows}")
    for r in rows:
        labels = dict(re.findall(r'(\w+)="([^"]*)"', r["LABELS"]))
        check(float(r["VALUE"]) == ref[(r["METRIC"], labels_key(labels))], f"{r}")
    check(any(r["METRIC"] == "vesta:prompt_tokens_total" and float(r["VALUE"]) > 0 for r in rows),
          "prompt tokens counted")


def test_histogram_values(c):
    # a histogram is one row per label set: count and mean from its _count and _sum
    out = ok(c, "metrics", "--grep", "e2e_request_latency")
    m = c.metrics()
    lines = out.splitlines()[1:]
    n_sets = len({k[1] for k in m if k[0] == "vesta:e2e_request_latency_seconds_count"})
    check(len(lines) == n_sets and n_sets >= 1, f"histogram rows {lines}")
    for line in lines:
        name, typ, labels, value = re.match(r"(\S+)\s+(\S+)\s+(\S+)\s+(.*)$", line).groups()
        check(typ == "histogram", line)
        lk = labels_key(dict(re.findall(r'(\w+)="([^"]*)"', labels)))
        count, total = m[(name + "_count", lk)], m[(name + "_sum", lk)]
        check(re.search(rf"count={int(count)}\b", value), f"{line}: count {count}")
        if count > 0:
            mean = float(re.search(r"mean=(\S+)", value).group(1))
            check(abs(mean - total / count) <= 1e-5 * max(1.0, total / count), f"{line}: mean")


def test_errors(c):
    rc, out, err = vctl(c, "workers", key=False)
    check(rc == 1 and "HTTP 401" in err, f"no key: {rc} {err}")
    rc, out, err = vctl(c, "status", url=f"http://127.0.0.1:{free_port()}")
    check(rc == 1 and "cannot reach the router" in err and out == "", f"dead url: {rc} {err}")
    rc, out, err = vctl(c, "drain", "no-such-worker")
    check(rc == 1 and "HTTP 404" in err and "no-such-worker" in err, f"unknown worker: {rc} {err}")
    for args in [(), ("bogus",), ("drain",), ("drain", "a", "b"), ("workers", "--grep", "x"),
                 ("metrics", "--grep", "("), ("--timeout", "0", "status"), ("--nope", "status")]:
        rc, out, err = vctl(c, *args)
        check(rc == 2 and err.startswith("vctl: "), f"usage {args}: {rc} {err}")
    rc, out, err = vctl(c, "--help")
    check(rc == 0 and "usage: vctl" in out, "--help")


def test_drain(c):
    rc, out, err = vctl(c, "drain", "w1")
    check(rc == 0 and out.startswith("worker w1: draining"), f"drain: {rc} {out} {err}")
    w1 = {w["id"]: w for w in admin(c)["workers"]}["w1"]
    check(w1["state"] in ("draining", "left"), f"router reports w1 {w1['state']}")
    h = c.http.get("/health").json()
    check(h["workers"]["draining"] + h["workers"]["left"] == 1 and h["workers"]["live"] == 1, h)
    # an idle sim worker leaves at once; the router then reports it left
    Cluster.wait(lambda: {w["id"]: w for w in admin(c)["workers"]}["w1"]["state"] == "left", 30,
                 "w1 leaving")
    rows = {r["ID"]: r for r in table(ok(c, "status").partition("\n\n")[2])}
    check(rows["w1"]["STATE"] == "left" and rows["w0"]["STATE"] == "live", f"status after drain {rows}")
    # a drained worker cannot be drained again
    rc, out, err = vctl(c, "drain", "w1")
    check(rc == 1 and "HTTP 404" in err, f"drain twice: {rc} {err}")
    # with no live worker /health is 503: status shows it and fails
    check(vctl(c, "--json", "drain", "w0")[0] == 0, "drain w0")
    Cluster.wait(lambda: c.http.get("/health").status_code == 503, 30, "no live worker")
    rc, out, err = vctl(c, "status")
    check(rc == 1 and "status unavailable" in out and "no live worker" in err, f"503: {rc} {out} {err}")


def test_drain_escaped_id(c):
    # ids with characters that need escaping in a URL path: vctl percent-encodes them and the
    # router matches the decoded id
    wid = "node a/0?x%"
    c.start_worker(wid)
    Cluster.wait(lambda: any(w["id"] == wid and w["state"] == "live" for w in admin(c)["workers"]), 30,
                 "escaped-id worker live")
    rc, out, err = vctl(c, "drain", wid)
    check(rc == 0 and out.startswith(f"worker {wid}: draining"), f"drain escaped id: {rc} {out} {err}")
    Cluster.wait(lambda: {w["id"]: w for w in admin(c)["workers"]}[wid]["state"] == "left", 30,
                 "escaped-id worker leaving")
    # an id longer than any worker id is not truncated into another worker's id
    r = c.http.post("/admin/workers/" + "w" * 300 + "/drain", headers=AUTH)
    check(r.status_code == 404 and r.json()["error"]["code"] == "not_found", f"long id: {r.status_code} {r.text}")
    for bad in (".", ".."):
        rc, out, err = vctl(c, "drain", bad)
        check(rc == 2 and "fits in a URL path" in err, f"drain {bad!r}: {rc} {err}")


def main():
    lora = ["--enable-lora", "--lora-modules", "sql=/adapters/sql", "chat=/adapters/chat"]
    with Cluster(BIN, MODEL, workers=2, router_args=["--api-key", KEY, *lora], worker_args=lora) as c:
        traffic(c)
        for t in (test_workers, test_status, test_models, test_metrics, test_histogram_values,
                  test_errors, test_drain, test_drain_escaped_id):
            t(c)
            print(f"ok {t.__name__}")
    print(f"vctl: {checks_passed()} checks passed")


if __name__ == "__main__":
    main()
