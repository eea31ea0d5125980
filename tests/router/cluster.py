"""Starts vesta-router + vesta-worker processes on loopback ports for tests and benchmarks.

Every process is killed on exit (context manager), and every wait is bounded in time."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import httpx


_checks = [0]


def check(cond, what):
    """One test assertion: counts it (checks_passed) and raises AssertionError(what) if cond is false."""
    _checks[0] += 1
    if not cond:
        raise AssertionError(what)


def checks_passed():
    return _checks[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, bin_dir, model, workers=2, router_args=(), worker_args=(),
                 sim_rate=500.0, backend="sim"):
        self.bin_dir = bin_dir
        self.model = model
        self.n_workers = workers
        self.router_args = list(router_args)
        self.worker_args = list(worker_args)
        self.sim_rate = sim_rate
        self.backend = backend
        self.router = None
        self.router_rc = None
        self.workers = {}
        self.logdir = tempfile.mkdtemp(prefix="vesta-router-test-")
        self.port = free_port()
        self.zmq_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=30.0)

    # -- processes --
    def _spawn(self, name, argv):
        log = open(os.path.join(self.logdir, name.replace("/", "_") + ".log"), "wb")
        env = dict(os.environ)
        supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lsan.supp")
        env["LSAN_OPTIONS"] = ":".join(filter(None, [env.get("LSAN_OPTIONS"),
                                                     f"suppressions={supp}"]))
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)

    def start_router(self):
        argv = [os.path.join(self.bin_dir, "vesta-router"), "--model", self.model,
                "--port", str(self.port), "--zmq-bind", f"tcp://127.0.0.1:{self.zmq_port}",
                *self.router_args]
        self.router = self._spawn("router", argv)
        self.wait(lambda: self._get_ok("/version"), 60, "router start")

    def start_worker(self, wid, extra=()):
        argv = [os.path.join(self.bin_dir, "vesta-worker"), "--backend", self.backend,
                "--model", self.model, "--router", f"tcp://127.0.0.1:{self.zmq_port}",
                "--worker-id", wid, "--heartbeat-ms", "100"]
        if self.backend == "sim":
            argv += ["--sim-vocab-size", "49152", "--sim-tokens-per-second", str(self.sim_rate)]
        argv += [*self.worker_args, *extra]
        self.workers[wid] = self._spawn(wid, argv)

    def start(self):
        self.start_router()
        for i in range(self.n_workers):
            self.start_worker(f"w{i}")
        self.wait(lambda: self.live_workers() == self.n_workers, 60, "workers registering")
        return self

    def kill_worker(self, wid, sig=signal.SIGKILL):
        p = self.workers[wid]
        p.send_signal(sig)
        p.wait(timeout=10)

    def stop(self):
        procs = list(self.workers.values()) + ([self.router] if self.router else [])
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        self.http.close()
        # the router shuts down cleanly on SIGTERM (under ASan: without leaks or errors)
        self.router_rc = self.router.returncode if self.router else 0

    def __enter__(self):
        try:
            return self.start()
        except Exception:
            self.dump_logs()
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is not None or self.router_rc != 0:
            self.dump_logs()
        if exc[0] is None and self.router_rc != 0:
            raise AssertionError(f"vesta-router exited with status {self.router_rc}")

    def dump_logs(self):
        for f in sorted(os.listdir(self.logdir)):
            with open(os.path.join(self.logdir, f), "rb") as fh:
                data = fh.read()[-4000:]
            print(f"----- {f} -----\n{data.decode(errors='replace')}")

    # -- helpers --
    def _get_ok(self, path):
        try:
            return self.http.get(path).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def wait(cond, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.05)
        raise TimeoutError(f"timed out waiting for {what}")

    def admin_workers(self):
        return {w["id"]: w for w in self.http.get("/admin/workers").json()["workers"]}

    def live_workers(self):
        try:
            r = self.http.get("/health")
            return r.json()["workers"]["live"]
        except (httpx.HTTPError, ValueError, KeyError):
            return 0

    def metrics(self):
        """Parses the Prometheus text into {(name, frozenset(labels)): value}."""
        out = {}
        for line in self.http.get("/metrics").text.splitlines():
            if not line or line.startswith("#"):
                continue
            head, value = line.rsplit(" ", 1)
            if "{" in head:
                name, labels = head.split("{", 1)
                labels = labels.rstrip("}")
                pairs = []
                for part in labels.split('",'):
                    if part:
                        k, v = part.split("=", 1)
                        pairs.append((k, v.strip('"')))
                out[(name, frozenset(pairs))] = float(value)
            else:
                out[(head, frozenset())] = float(value)
        return out

    def post(self, path, body, headers=None, **kw):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        h = {"Content-Type": "application/json", **(headers or {})}
        return self.http.post(path, content=body, headers=h, **kw)
