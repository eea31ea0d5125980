"""`vesta serve` with 2 sim workers and the real router: it serves, restarts a killed worker,
and on SIGTERM finishes in-flight requests and exits 0 with no child left.

usage: test_serve_sim.py PATH/TO/vesta   (env VESTA_MODEL: the router's tokenizer source)
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

VESTA = sys.argv[1]
MODEL = os.environ.get("VESTA_MODEL")
if not MODEL or not os.path.exists(MODEL):
    sys.exit("VESTA_MODEL must name the default model (scripts/fetch-model.sh)")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return {int(line.split()[0]): line for line in out.splitlines() if line.strip()}


def workers(pid):
    return {p: a for p, a in children(pid).items() if "vesta-worker" in a}


def post(port, body, timeout=60):
    req = urllib.request.Request("http://127.0.0.1:%d/v1/completions" % port,
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read())


def wait_ready(port, proc, want_workers=2, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError("vesta serve exited early: %s" % proc.returncode)
        try:
            st, body = post(port, {"model": "sim", "prompt": "warm up", "max_tokens": 1}, timeout=5)
            if st == 200 and len(workers(proc.pid)) == want_workers:
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise AssertionError("vesta serve never became ready")


def main():
    port, zport = free_port(), free_port()
    proc = subprocess.Popen([VESTA, "serve", "--model", MODEL, "--backend", "sim", "--workers", "2",
                             "--port", str(port), "--zmq-bind", "tcp://127.0.0.1:%d" % zport,
                             "--served-model-name", "sim", "--sim-vocab-size", "49152",
                             "--sim-tokens-per-second", "200", "--heartbeat-ms", "100",
                             "--max-model-len", "2048"],
                            stderr=subprocess.PIPE, text=True)
    log = []
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
    try:
        wait_ready(port, proc)
        st, body = post(port, {"model": "sim", "prompt": "Hello there", "max_tokens": 5,
                               "temperature": 0})
        assert st == 200 and body["usage"]["completion_tokens"] == 5, body
        assert body["choices"][0]["finish_reason"] == "length", body

        # A killed worker is restarted (same id), and requests keep succeeding.
        before = workers(proc.pid)
        victim = sorted(before)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.time() + 20
        while time.time() < deadline:
            now = workers(proc.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.2)
        now = workers(proc.pid)
        assert len(now) == 2 and victim not in now, (before, now)
        assert any("restart" in line for line in log), log
        wait_ready(port, proc)

        # SIGTERM with a request in flight: it completes, then everything exits 0.
        result = {}

        def long_request():
            try:
                result["r"] = post(port, {"model": "sim", "prompt": "long one", "max_tokens": 200})
            except urllib.error.HTTPError as e:  # reported below, after the exit status
                result["error"] = "%r: %s" % (e, e.read().decode(errors="replace"))
            except Exception as e:
                result["error"] = repr(e)

        t = threading.Thread(target=long_request)
        t.start()
        time.sleep(0.3)
        kids = list(children(proc.pid))
        proc.send_signal(signal.SIGTERM)
        t.join(timeout=60)
        assert proc.wait(timeout=90) == 0, "exit status"
        assert "r" in result, "the in-flight request did not survive SIGTERM: %s" % result
        st, body = result["r"]
        assert st == 200 and body["usage"]["completion_tokens"] == 200, body
        for k in kids:
            assert not os.path.exists("/proc/%d" % k) or \
                open("/proc/%d/stat" % k).read().split()[2] == "Z", "child %d left running" % k
        print("serve sim: all passed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sys.stderr.write("".join(log[-80:]))


if __name__ == "__main__":
    main()
