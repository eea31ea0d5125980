"""Checks the deploy/ artifacts against the real programs (Docker and Kubernetes are not needed).

usage: test_deploy.py BIN_DIR MODEL

- every YAML file under deploy/ parses; the kustomization lists files that exist;
- compose: the router and worker `command`s, with the config file the compose file mounts,
  start vesta-router + 2 cpu workers (only the listen addresses, the router endpoint and the
  model path are replaced by local ones); the cluster answers a completion; the healthcheck URL
  answers 200;
- k8s: the ConfigMap's config with the Deployment's and StatefulSet's commands ($(POD_NAME)
  expanded as Kubernetes does; sim backend: no GPU here) starts a cluster; the worker registers
  under its pod name; the probe and Prometheus-annotation URLs answer."""
import os
import re
import sys
import tempfile

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "router"))
from cluster import Cluster, check, checks_passed  # noqa: E402

BIN, MODEL = sys.argv[1], os.path.abspath(sys.argv[2])



def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def set_flag(argv, flag, value):
    """argv with `flag value` replaced (or appended), as an operator's override would be."""
    out = list(argv)
    if flag in out:
        out[out.index(flag) + 1] = value
    else:
        out += [flag, value]
    return out


class DeployCluster(Cluster):
    """Cluster whose router/worker argv come from a deploy artifact."""

    def __init__(self, router_argv, worker_argv, n_workers, worker_ids=None):
        super().__init__(BIN, MODEL, workers=n_workers)
        self.router_argv, self.worker_argv, self.worker_ids = router_argv, worker_argv, worker_ids

    def start_router(self):
        argv = set_flag(set_flag(set_flag(self.router_argv, "--host", "127.0.0.1"),
                                 "--port", str(self.port)),
                        "--zmq-bind", f"tcp://127.0.0.1:{self.zmq_port}")
        argv = set_flag(argv, "--model", MODEL)
        argv[0] = os.path.join(BIN, argv[0])
        self.router = self._spawn("router", argv)
        self.wait(lambda: self._get_ok("/version"), 60, "router start")

    def start_worker(self, wid, extra=()):
        argv = set_flag(set_flag(self.worker_argv, "--router", f"tcp://127.0.0.1:{self.zmq_port}"),
                        "--model", MODEL)
        argv = [a.replace("$(POD_NAME)", wid) for a in argv] + list(extra)
        argv[0] = os.path.join(BIN, argv[0])
        self.workers[wid] = self._spawn(wid, argv)

    def start(self):
        self.start_router()
        for i in range(self.n_workers):
            self.start_worker(self.worker_ids[i] if self.worker_ids else f"w{i}")
        self.wait(lambda: self.live_workers() == self.n_workers, 120, "workers registering")
        return self


def test_yaml():
    files = []
    for d, _, names in os.walk(os.path.join(ROOT, "deploy")):
        files += [os.path.join(d, n) for n in names if n.endswith((".yml", ".yaml"))]
    check(len(files) >= 5, f"deploy YAML files: {files}")
    for f in files:
        check(len(load_all(f)) >= 1, f"{f} parses")
    kust = load_all(os.path.join(ROOT, "deploy/k8s/kustomization.yaml"))[0]
    for r in kust["resources"]:
        check(os.path.exists(os.path.join(ROOT, "deploy/k8s", r)), f"kustomization resource {r}")


def test_compose():
    cdir = os.path.join(ROOT, "deploy/compose")
    comp = load_all(os.path.join(cdir, "docker-compose.yml"))[0]
    svc = comp["services"]
    # the config the compose file mounts at /etc/vesta/vesta.yaml
    mounts = [v for v in comp["x-vesta"]["volumes"] if v.endswith(":/etc/vesta/vesta.yaml:ro")]
    check(len(mounts) == 1, f"config mount {mounts}")
    config = os.path.normpath(os.path.join(cdir, mounts[0].split(":")[0]))
    check(os.path.exists(config), config)
    cfg = load_all(config)[0]
    check(cfg["router"]["host"] == "0.0.0.0" and cfg["router"]["zmq_bind"].startswith("tcp://0.0.0.0:"),
          "the router listens on all interfaces inside the container")
    zport = cfg["router"]["zmq_bind"].rsplit(":", 1)[1]
    worker_cmd = svc["worker"]["command"]
    check(worker_cmd[worker_cmd.index("--router") + 1] == f"tcp://router:{zport}", "worker → router:zmq")
    check(svc["router"]["ports"] == [f"{cfg['router']['port']}:{cfg['router']['port']}"], "port 8000")
    hc = svc["router"]["healthcheck"]["test"]
    url = [a for a in hc if a.startswith("http://")][0]
    check(url.endswith("/health") and f":{cfg['router']['port']}/" in url, url)
    cmd = lambda s: [a.replace("/etc/vesta/vesta.yaml", config) for a in svc[s]["command"]]
    n = svc["worker"]["deploy"]["replicas"]
    with DeployCluster(cmd("router"), cmd("worker"), n) as c:
        ws = c.admin_workers()
        check(len(ws) == n and all(w["backend"] == cfg["workers"]["backend"] for w in ws.values()),
              f"workers {ws}")
        check(all(w["max_model_len"] == cfg["model"]["max_model_len"] for w in ws.values()), "max_model_len")
        name = cfg["model"]["served_model_name"][-1]
        r = c.post("/v1/completions", {"model": name, "prompt": "Hello", "max_tokens": 4, "temperature": 0})
        check(r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1, r.text)
        check(c.http.get(url.split(f":{cfg['router']['port']}", 1)[1]).status_code == 200, "healthcheck")
    print("ok compose")


def k8s_objects():
    objs = {}
    for f in ("configmap.yaml", "router.yaml", "workers.yaml"):
        for d in load_all(os.path.join(ROOT, "deploy/k8s", f)):
            objs[(d["kind"], d["metadata"]["name"])] = d
    return objs


def test_k8s():
    objs = k8s_objects()
    cm = objs[("ConfigMap", "vesta-config")]["data"]["vesta.yaml"]
    cfg = yaml.safe_load(cm)
    tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    tmp.write(cm)
    tmp.close()
    dep = objs[("Deployment", "vesta-router")]["spec"]["template"]
    sts = objs[("StatefulSet", "vesta-worker")]["spec"]["template"]
    rc, wc = dep["spec"]["containers"][0], sts["spec"]["containers"][0]
    check(wc["resources"]["limits"]["nvidia.com/gpu"] == 1, "a GPU per worker")
    zsvc = objs[("Service", "vesta-router-zmq")]["spec"]
    check(zsvc["publishNotReadyAddresses"] is True, "workers reach a not-yet-ready router")
    zport = cfg["router"]["zmq_bind"].rsplit(":", 1)[1]
    endpoint = wc["command"][wc["command"].index("--router") + 1]
    check(endpoint == f"tcp://vesta-router-zmq:{zsvc['ports'][0]['port']}" and
          str(zsvc["ports"][0]["port"]) == zport, f"worker endpoint {endpoint}")
    ann = dep["metadata"]["annotations"]
    check(ann["prometheus.io/port"] == str(cfg["router"]["port"]), "scrape port")
    fix = lambda cmd: [a.replace("/etc/vesta/vesta.yaml", tmp.name) for a in cmd]
    try:
        # no GPU here: the sim backend stands in for cuda, everything else is the manifest's
        with DeployCluster(fix(rc["command"]), fix(wc["command"]) + ["--backend", "sim"], 1,
                           worker_ids=["vesta-worker-0"]) as c:
            ws = c.admin_workers()
            check(list(ws) == ["vesta-worker-0"], f"the pod name is the worker id: {list(ws)}")
            check(ws["vesta-worker-0"]["max_model_len"] == cfg["model"]["max_model_len"], "config reached the worker")
            check(c.http.get(rc["readinessProbe"]["httpGet"]["path"]).status_code == 200, "readiness")
            live = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*)", " ".join(rc["livenessProbe"]["exec"]["command"]))
            check(live.group(1) == str(cfg["router"]["port"]) and
                  c.http.get(live.group(2)).status_code == 200, "liveness URL")
            m = c.http.get(ann["prometheus.io/path"])
            check(m.status_code == 200 and "vesta:num_requests_running" in m.text, "scrape path")
    finally:
        os.unlink(tmp.name)
    print("ok k8s")


test_yaml()
test_compose()
test_k8s()
print(f"deploy: {checks_passed()} checks passed")
