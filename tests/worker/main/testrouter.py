"""A minimal router for worker tests: pyzmq ROUTER + msgpack (independent of vesta_proto), and the
prefix block keys recomputed with the xxhash package from include/vesta/prefix_hash.h."""
import struct
import time

import msgpack
import xxhash
import zmq


def block_keys(tokens, block_size, salt=0):
    """include/vesta/prefix_hash.h, written from its comment."""
    h = xxhash.xxh3_64_intdigest(b"vesta-kv-v1", seed=salt)
    keys = []
    for off in range(0, len(tokens) - block_size + 1, block_size):
        buf = struct.pack("<Qi", h, 0) + struct.pack("<%di" % block_size, *tokens[off:off + block_size])
        h = xxhash.xxh3_64_intdigest(buf, seed=salt)
        keys.append(h)
    return keys


class Router:
    def __init__(self):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.backlog = []
        self.kv_stored = set()
        self.kv_seq = 0

    def send(self, ident, msg, raw=False):
        payload = msg if raw else msgpack.packb(dict({"v": 1}, **msg))
        self.sock.send_multipart([ident, payload])

    def recv(self, timeout=5.0, want=None, match=None):
        """Next message of type `want` (or for which match(m) holds), keeping others in the
        backlog; KV events are recorded as they arrive."""
        ok = match or (lambda m: want is None or m["type"] == want)
        for i, (ident, m) in enumerate(self.backlog):
            if ok(m):
                del self.backlog[i]
                return ident, m
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.sock.poll(int(max(0.0, deadline - time.time()) * 1000) + 1):
                continue
            ident, payload = self.sock.recv_multipart()
            m = msgpack.unpackb(payload, raw=False)
            assert m["v"] == 1, m
            if m["type"] == "kv_events":
                assert m["seq"] == self.kv_seq + 1, ("kv_events seq gap", m["seq"], self.kv_seq)
                self.kv_seq = m["seq"]
                if m["all_cleared"]:
                    self.kv_stored.clear()
                self.kv_stored -= set(m["evicted"])
                self.kv_stored |= set(m["stored"])
            if m["type"] == "register":
                self.kv_seq = 0
            if ok(m):
                return ident, m
            self.backlog.append((ident, m))
        raise AssertionError("timed out waiting for %s" % want)

    def generate(self, ident, rid, prompt, **sampling):
        self.send(ident, {"type": "generate", "request_id": rid, "prompt_ids": prompt,
                          "sampling": sampling})

    def collect(self, rid, n=1, timeout=10.0):
        """Tokens of every sequence of request rid until each finishes: {seq: (ids, finish, last)}"""
        seqs = {}
        done = set()
        deadline = time.time() + timeout
        while len(done) < n:
            _, m = self.recv(timeout=max(0.1, deadline - time.time()),
                             match=lambda m: m["type"] in ("tokens", "error")
                             and m.get("request_id") == rid)
            if m["type"] == "error":
                return {"error": m}
            ids, _f, _last = seqs.get(m["seq_index"], ([], None, None))
            assert m["seq_index"] not in done, "tokens after finish"
            ids = ids + m["token_ids"]
            if m["logprobs"] is not None:
                assert len(m["logprobs"]) == len(m["token_ids"])
            seqs[m["seq_index"]] = (ids, m["finish"], m)
            if m["finish"]:
                done.add(m["seq_index"])
        return seqs

    def drop_backlog(self, type_):
        self.backlog = [(i, m) for (i, m) in self.backlog if m["type"] != type_]


