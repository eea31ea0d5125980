"""End-to-end tests of vesta-router against `vesta-worker --backend sim` processes.

usage: test_router.py BIN_DIR MODEL GROUP
GROUP: endpoints | errors | auth | streaming | concurrency | failure | routing

The sim backend draws tokens from a seeded generator, so equal seeds give equal token streams;
the tests compare the router's own outputs with each other (streamed vs not, stop strings vs the
full text), with the official `openai` client's parsing, and with /tokenize."""
import json
import sys
import threading
import time

import httpx
import openai

sys.path.insert(0, __import__("os").path.dirname(__file__))
from cluster import Cluster, check, checks_passed  # noqa: E402

BIN, MODEL, GROUP = sys.argv[1], sys.argv[2], sys.argv[3]



def client(c, key="none"):
    return openai.OpenAI(base_url=c.url + "/v1", api_key=key, max_retries=0, timeout=30)


def sse_events(resp):
    """The data payloads of an SSE response (strings), in order."""
    out = []
    for line in resp.iter_lines():
        if line.startswith("data: "):
            out.append(line[6:])
    return out


def still_serving(c):
    check(c.http.get("/health").status_code == 200, "health after error")
    r = c.post("/v1/completions", {"prompt": "still there?", "max_tokens": 2})
    check(r.status_code == 200 and len(r.json()["choices"]) == 1, f"completion after error: {r.text}")


# ---------------------------------------------------------------- endpoints

def test_endpoints(c):
    oc = client(c)
    models = oc.models.list()
    check([m.id for m in models.data] == [MODEL], f"models: {models}")
    v = c.http.get("/version").json()
    check(isinstance(v["version"], str) and v["version"], "version")
    h = c.http.get("/health")
    check(h.status_code == 200 and h.json()["status"] == "ok", h.text)

    # tokenize / detokenize round trip, and the prompt count in usage
    text = "The quick brown fox jumps over the lazy dog."
    tok = c.post("/tokenize", {"model": MODEL, "prompt": text}).json()
    check(tok["count"] == len(tok["tokens"]) and tok["count"] > 5, f"tokenize {tok}")
    check(tok["max_model_len"] == 4096, "max_model_len from the sim workers")
    det = c.post("/detokenize", {"model": MODEL, "tokens": tok["tokens"]}).json()
    check(det["prompt"] == text, f"detokenize {det}")

    comp = oc.completions.create(model=MODEL, prompt=text, max_tokens=7, seed=1)
    check(comp.object == "text_completion" and comp.id.startswith("cmpl-"), "completion object")
    check(comp.usage.prompt_tokens == tok["count"], "usage.prompt_tokens == /tokenize count")
    check(comp.usage.completion_tokens == 7 and comp.usage.total_tokens == tok["count"] + 7, "usage")
    check(comp.choices[0].finish_reason == "length", "finish length")
    # the text is the detokenization of the generated tokens: tokenizing it back is consistent
    check(len(comp.choices[0].text) > 0, "text")

    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi!"}]
    chat = oc.chat.completions.create(model=MODEL, messages=msgs, max_tokens=5, seed=3)
    ctok = c.post("/tokenize", {"model": MODEL, "messages": msgs}).json()
    check(chat.usage.prompt_tokens == ctok["count"], "chat usage == /tokenize(messages)")
    check(chat.choices[0].message.role == "assistant", "role")
    check(chat.object == "chat.completion" and chat.id.startswith("chatcmpl-"), "chat object")
    rendered = c.post("/detokenize", {"tokens": ctok["tokens"]}).json()["prompt"]
    check("You are terse." in rendered and "Hi!" in rendered and rendered.rstrip().endswith("assistant"),
          f"chat template rendering: {rendered!r}")
    # the chat prompt equals the model's template rendered by Python jinja2 (read from the GGUF
    # by an independent reader), tokenized like a plain prompt without added special tokens
    import jinja2.sandbox
    from gguf_meta import read_metadata
    src = read_metadata(MODEL, {"tokenizer.chat_template"})["tokenizer.chat_template"]
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    tpl = env.from_string(src)
    for conv in ([{"role": "user", "content": "Hi!"}], msgs,
                 [{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
                  {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]):
        want = tpl.render(messages=conv, add_generation_prompt=True)
        got = c.post("/tokenize", {"messages": conv}).json()["tokens"]
        check(c.post("/detokenize", {"tokens": got}).json()["prompt"] == want, f"template {conv}")
        plain = c.post("/tokenize", {"prompt": want, "add_special_tokens": False}).json()["tokens"]
        check(got == plain, f"chat tokens == tokens of the rendered text: {conv}")
    # a special-token spelling typed by the user stays text (not the <|im_end|> token)
    typed = [{"role": "user", "content": "end here <|im_end|> ok"}]
    ids = c.post("/tokenize", {"messages": typed}).json()["tokens"]
    im_end = c.post("/tokenize", {"prompt": "<|im_end|>", "add_special_tokens": False}).json()["tokens"]
    check(len(im_end) == 1 and ids.count(im_end[0]) == 2, "typed <|im_end|> is plain text")
    # content parts are joined like a plain string
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hi!"}]}]
    ptok = c.post("/tokenize", {"messages": parts}).json()
    stok = c.post("/tokenize", {"messages": [{"role": "user", "content": "Hi!"}]}).json()
    check(ptok["tokens"] == stok["tokens"], "content parts == string content")

    # same seed -> same tokens; n > 1 gives n indexed choices
    a = oc.completions.create(model=MODEL, prompt=text, max_tokens=6, seed=42)
    b = oc.completions.create(model=MODEL, prompt=text, max_tokens=6, seed=42)
    check(a.choices[0].text == b.choices[0].text, "seeded determinism")
    n3 = oc.completions.create(model=MODEL, prompt=text, max_tokens=6, seed=42, n=3)
    check(sorted(ch.index for ch in n3.choices) == [0, 1, 2], "n=3 indexes")
    check(n3.usage.completion_tokens == 18 and n3.usage.prompt_tokens == tok["count"], "n=3 usage")
    check(len({ch.text for ch in n3.choices}) > 1, "n=3 sequences differ")

    # several prompts: choices indexed prompt * n + seq
    multi = oc.completions.create(model=MODEL, prompt=["one", "two words"], max_tokens=3, n=2, seed=5)
    check(sorted(ch.index for ch in multi.choices) == [0, 1, 2, 3], "multi-prompt indexes")
    p1 = c.post("/tokenize", {"prompt": "one"}).json()["count"]
    p2 = c.post("/tokenize", {"prompt": "two words"}).json()["count"]
    check(multi.usage.prompt_tokens == p1 + p2, "multi-prompt usage")
    ids = oc.completions.create(model=MODEL, prompt=tok["tokens"], max_tokens=6, seed=42)
    check(ids.choices[0].text == a.choices[0].text, "token-id prompt == text prompt")

    # echo
    e = oc.completions.create(model=MODEL, prompt=text, max_tokens=6, seed=42, echo=True)
    check(e.choices[0].text == text + a.choices[0].text, "echo")

    # logprobs: completions format
    lp = oc.completions.create(model=MODEL, prompt=text, max_tokens=4, seed=42, logprobs=2)
    L = lp.choices[0].logprobs
    check(len(L.tokens) == 4 and len(L.token_logprobs) == 4 and len(L.top_logprobs) == 4
          and len(L.text_offset) == 4, f"completion logprobs {L}")
    check(all(isinstance(x, float) and x <= 0 for x in L.token_logprobs), "logprob values")
    check("".join(L.tokens) == lp.choices[0].text, "logprob tokens concatenate to the text")
    clp = oc.chat.completions.create(model=MODEL, messages=msgs, max_tokens=3, seed=2,
                                     logprobs=True, top_logprobs=2)
    content = clp.choices[0].logprobs.content
    check(len(content) == 3 and all(len(t.top_logprobs) == 2 for t in content), "chat logprobs")
    check(all(bytes(t.bytes).decode("utf-8", "replace") == t.token for t in content), "bytes")

    # stop strings: the text up to the first stop string, finish "stop", stop_reason
    full = oc.completions.create(model=MODEL, prompt=text, max_tokens=40, seed=11).choices[0].text
    words = full.split(" ")
    stop = " " + words[len(words) // 2] if len(words) > 3 else full[len(full) // 2:][:3]
    cut = full.index(stop)
    s = oc.completions.create(model=MODEL, prompt=text, max_tokens=40, seed=11, stop=[stop])
    check(s.choices[0].text == full[:cut], f"stop: {s.choices[0].text!r} vs {full[:cut]!r}")
    check(s.choices[0].finish_reason == "stop", "stop finish")
    check(s.model_extra.get("choices") is None and s.choices[0].model_extra["stop_reason"] == stop,
          "stop_reason")
    inc = oc.completions.create(model=MODEL, prompt=text, max_tokens=40, seed=11, stop=stop,
                                extra_body={"include_stop_str_in_output": True})
    check(inc.choices[0].text == full[:cut] + stop, "include_stop_str_in_output")
    # metrics carry the set
    m = c.metrics()
    names = {k[0] for k in m}
    for want in ["vesta:num_requests_running", "vesta:num_requests_waiting",
                 "vesta:kv_cache_usage_perc", "vesta:prefix_cache_queries_total",
                 "vesta:prefix_cache_hits_total", "vesta:prompt_tokens_total",
                 "vesta:generation_tokens_total", "vesta:request_success_total",
                 "vesta:time_to_first_token_seconds_bucket", "vesta:inter_token_latency_seconds_sum",
                 "vesta:e2e_request_latency_seconds_count", "vesta:request_queue_time_seconds_count",
                 "vesta:num_preemptions_total", "vesta:routing_decisions_total"]:
        check(want in names, f"metric {want}")
    agg = m[("vesta:request_success_total",
             frozenset({("model_name", MODEL), ("finished_reason", "length")}))]
    check(agg >= 10, "success counter")


# ---------------------------------------------------------------- streaming

def test_streaming(c):
    oc = client(c)
    text = "Streaming should match"
    for kind in ("completions", "chat"):
        for n in (1, 2):
            kw = dict(model=MODEL, max_tokens=12, seed=7, n=n)
            if kind == "chat":
                kw["messages"] = [{"role": "user", "content": text}]
                whole = oc.chat.completions.create(**kw)
                full = {ch.index: ch.message.content for ch in whole.choices}
                stream = oc.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw)
            else:
                kw["prompt"] = text
                whole = oc.completions.create(**kw)
                full = {ch.index: ch.text for ch in whole.choices}
                stream = oc.completions.create(stream=True, stream_options={"include_usage": True}, **kw)
            pieces, finish, usage, ids = {}, {}, None, set()
            for chunk in stream:
                ids.add(chunk.id)
                if not chunk.choices:
                    usage = chunk.usage
                for ch in chunk.choices:
                    piece = ch.delta.content if kind == "chat" else ch.text
                    pieces[ch.index] = pieces.get(ch.index, "") + (piece or "")
                    if ch.finish_reason:
                        finish[ch.index] = ch.finish_reason
            check(len(ids) == 1, "one id per stream")
            check(pieces == full, f"{kind} n={n}: streamed {pieces} != {full}")
            check(finish == {i: "length" for i in range(n)}, f"finish {finish}")
            check(usage is not None and usage.completion_tokens == whole.usage.completion_tokens
                  and usage.prompt_tokens == whole.usage.prompt_tokens, "final usage chunk")
    # raw SSE framing: data: lines, [DONE] last, no usage chunk unless asked
    with c.http.stream("POST", "/v1/completions", json={"prompt": "x", "max_tokens": 3,
                                                        "stream": True}) as r:
        check(r.headers["content-type"].startswith("text/event-stream"), "SSE content type")
        ev = sse_events(r)
    check(ev[-1] == "[DONE]" and all(json.loads(e)["choices"] for e in ev[:-1]), f"SSE {ev}")
    # stop strings in streams: same text as without streaming
    full = oc.completions.create(model=MODEL, prompt=text, max_tokens=30, seed=21).choices[0].text
    stop = full[len(full) // 2:len(full) // 2 + 2]
    ref = oc.completions.create(model=MODEL, prompt=text, max_tokens=30, seed=21, stop=stop)
    got = "".join(ch.choices[0].text for ch in oc.completions.create(
        model=MODEL, prompt=text, max_tokens=30, seed=21, stop=stop, stream=True) if ch.choices)
    check(got == ref.choices[0].text == full[:full.index(stop)], "stream stop")


# ---------------------------------------------------------------- errors

def expect_error(c, path, body, status, param=None, contains=None, headers=None):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    try:
        r = c.http.post(path, content=body, headers=h)
    except httpx.HTTPError as ex:
        raise AssertionError(f"{path} {body[:80]!r}: {ex!r}") from ex
    check(r.status_code == status, f"{path} {body[:80]!r}: status {r.status_code} != {status}: {r.text}")
    err = r.json()["error"]
    check(set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str),
          f"error shape {err}")
    if param is not None:
        check(err["param"] == param, f"param {err['param']} != {param}")
    if contains is not None:
        check(contains in err["message"], f"{contains!r} not in {err['message']!r}")
    return r


def test_errors(c):
    C, X = "/v1/completions", "/v1/chat/completions"
    ok = {"prompt": "hello", "max_tokens": 2}
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    cases = [
        (C, "{not json", 400, None), (C, "[1,2]", 400, None), (C, "", 400, None),
        (C, '{"prompt": "a", "temperature": NaN}', 400, None),
        (C, '{"prompt": "a", "temperature": 1e999}', 400, None),
        (C, {**ok, "temperature": "hot"}, 400, "temperature"),
        (C, {**ok, "temperature": -0.5}, 400, "temperature"),
        (C, {**ok, "max_tokens": "5"}, 400, "max_tokens"),
        (C, {**ok, "max_tokens": -1}, 400, "max_tokens"),
        (C, {**ok, "max_tokens": 0}, 400, "max_tokens"),
        (C, {**ok, "stream": "yes"}, 400, "stream"),
        (C, {**ok, "n": 1.5}, 400, "n"), (C, {**ok, "n": 0}, 400, "n"), (C, {**ok, "n": 1000}, 400, "n"),
        (C, {**ok, "top_p": 0}, 400, "top_p"), (C, {**ok, "top_p": 1.5}, 400, "top_p"),
        (C, {**ok, "top_k": -2}, 400, "top_k"), (C, {**ok, "min_p": 2}, 400, "min_p"),
        (C, {**ok, "presence_penalty": 3}, 400, "presence_penalty"),
        (C, {**ok, "frequency_penalty": -3}, 400, "frequency_penalty"),
        (C, {**ok, "repetition_penalty": 0}, 400, "repetition_penalty"),
        (C, {**ok, "logprobs": 21}, 400, "logprobs"), (C, {**ok, "logprobs": -1}, 400, "logprobs"),
        (C, {**ok, "min_tokens": 5}, 400, "min_tokens"),
        (C, {"prompt": "hello", "min_tokens": 20}, 400, None),  # over the default max_tokens 16
        (C, {**ok, "response_format": {"type": "json_object"}}, 400, "response_format"),
        (C, {**ok, "stop": 5}, 400, "stop"), (C, {**ok, "stop": ["a", 1]}, 400, "stop"),
        (C, {**ok, "stop_token_ids": [-1]}, 400, "stop_token_ids"),
        (C, {**ok, "stop_token_ids": [10 ** 7]}, 400, "stop_token_ids"),
        (C, {**ok, "logit_bias": {"999999": 1}}, 400, "logit_bias"),
        (C, {**ok, "logit_bias": {"5": 500}}, 400, "logit_bias"),
        (C, {**ok, "logit_bias": {"x": 1}}, 400, "logit_bias"),
        (C, {**ok, "stream_options": {"include_usage": True}}, 400, "stream_options"),
        (C, {"prompt": [999999], "max_tokens": 2}, 400, "prompt"),
        (C, {"prompt": [1, "a"], "max_tokens": 2}, 400, "prompt"),
        (C, {"prompt": ["a", [1]], "max_tokens": 2}, 400, "prompt"),
        (C, {"prompt": "", "max_tokens": 2}, 400, "prompt"),
        (C, {"prompt": [], "max_tokens": 2}, 400, "prompt"),
        (C, {"prompt": [[]], "max_tokens": 2}, 400, "prompt"),
        (C, {"max_tokens": 2}, 400, "prompt"), (C, {"prompt": 5}, 400, "prompt"),
        (C, {**ok, "echo": True, "logprobs": 1}, 400, "echo"),
        (X, {"messages": [], "max_tokens": 2}, 400, "messages"),
        (X, {"messages": "hi", "max_tokens": 2}, 400, "messages"),
        (X, {"max_tokens": 2}, 400, "messages"),
        (X, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages"),
        (X, {"messages": [{"content": "x"}]}, 400, "messages"),
        (X, {"messages": [{"role": "user", "content": 5}]}, 400, "messages"),
        (X, {"messages": [{"role": "user"}]}, 400, "messages"),
        (X, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         400, "messages"),
        (X, {**chat, "top_logprobs": 3}, 400, "top_logprobs"),
        (X, {**chat, "logprobs": True, "top_logprobs": 50}, 400, "top_logprobs"),
        (X, {**chat, "max_completion_tokens": -4}, 400, "max_completion_tokens"),
        (X, {**chat, "tools": "x"}, 400, "tools"),
    ]
    for path, body, status, param in cases:
        expect_error(c, path, body, status, param)
    still_serving(c)

    # vLLM's context-length wording, with the counts of this request
    n = c.post("/tokenize", {"prompt": "hello"}).json()["count"]
    msg = ("This model's maximum context length is 4096 tokens. However, you requested "
           f"{n + 5000} tokens ({n} in the messages, 5000 in the completion). Please reduce the "
           "length of the messages or completion.")
    r = expect_error(c, C, {"prompt": "hello", "max_tokens": 5000}, 400)
    check(r.json()["error"]["message"] == msg, f"context message: {r.json()['error']['message']}")
    expect_error(c, X, {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4096}, 400,
                 contains="This model's maximum context length is 4096 tokens.")
    # the official client raises the matching exception classes
    oc = client(c)
    try:
        oc.completions.create(model=MODEL, prompt="x", max_tokens=-3)
        check(False, "no exception")
    except openai.BadRequestError as ex:
        check(ex.status_code == 400, "BadRequestError")
    try:
        oc.completions.create(model="no-such-model", prompt="x", max_tokens=2)
        check(False, "no exception")
    except openai.NotFoundError as ex:
        check(ex.status_code == 404 and ex.body["code"] == "model_not_found", f"404 {ex.body}")
    expect_error(c, X, {**chat, "model": "gpt-4"}, 404, "model")
    # methods, paths
    r = c.http.get("/v1/completions")
    check(r.status_code == 405 and "error" in r.json(), "405")
    r = c.http.get("/nope")
    check(r.status_code == 404 and "error" in r.json(), "404 path")
    # /tokenize and /detokenize validation
    expect_error(c, "/tokenize", {"model": MODEL}, 400, "prompt")
    expect_error(c, "/tokenize", {"prompt": 5}, 400, "prompt")
    expect_error(c, "/detokenize", {"tokens": [-1]}, 400, "tokens")
    expect_error(c, "/detokenize", {"tokens": "abc"}, 400, "tokens")
    expect_error(c, "/tokenize", {"prompt": "x", "model": "other"}, 404, "model")
    # raw garbage on the socket, then the server still answers
    import socket
    for junk in (b"GARBAGE\r\n\r\n", b"POST /v1/completions HTTP/1.1\r\nContent-Length: 5\r\n\r\n{",
                 b"\x00\xff" * 100):
        s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
        s.sendall(junk)
        s.close()
    still_serving(c)


def test_limits(c):
    """Router started with --max-body-bytes 4096 --max-queued-requests 1 (slow sim)."""
    big = json.dumps({"prompt": "x" * 5000, "max_tokens": 2})
    expect_error(c, "/v1/completions", big, 413)
    still_serving(c)
    # one long request fills the queue: the next is refused with Retry-After
    holder = c.http.stream("POST", "/v1/completions",
                           json={"prompt": "hold", "max_tokens": 200, "stream": True})
    resp = holder.__enter__()
    try:
        # `lines` stays referenced while the holder must run: a dropped iter_lines() generator
        # is closed at once by CPython, httpx then closes the connection, and the router rightly
        # aborts the holder as a client that left ("more" was admitted whenever it reached the
        # router after the router saw the hang-up: a flake under load)
        lines = resp.iter_lines()

        def next_event():  # the next SSE line; "" once the stream has ended
            for line in lines:
                if line:
                    return line
            return ""

        def is_chunk(line):  # a token chunk of the holder, not an error event
            if not line.startswith("data: {"):
                return False
            ev = json.loads(line[6:])
            return "error" not in ev and len(ev.get("choices") or []) == 1

        def in_flight():
            return sum(w["inflight_requests"] for w in c.admin_workers().values())

        first = next_event()  # the first chunk: the request is running
        check(is_chunk(first), f"the holder's first chunk: {first!r}")

        def holder_gone(what):  # say how the holder ended
            inflight = {n: w["inflight_requests"] for n, w in c.admin_workers().items()}
            counters = [x for x in c.http.get("/metrics").text.splitlines()
                        if x.startswith(("vesta:router_client_aborts", "vesta:router_worker_failures"))]
            rest = [x for x in lines if x][-3:]
            raise AssertionError(f"{what}; in flight {inflight}, {counters}; the holder's first chunk {first!r}, "
                                 f"its last {rest}")

        if in_flight() != 1:
            holder_gone("the holder is not in flight")
        try:
            r = expect_error(c, "/v1/completions", {"prompt": "more", "max_tokens": 2}, 503)
        except AssertionError as e:
            holder_gone(str(e)[:300])
        check(r.json()["error"]["code"] == "queue_full", f"refused for a full queue: {r.text}")
        check(r.headers.get("retry-after") == "1", f"Retry-After {r.headers}")
        # the holder ran all along: its stream goes on and it is still the one in flight
        nxt = next_event()
        if not is_chunk(nxt) or in_flight() != 1:
            holder_gone(f"the holder's chunk after the refusal: {nxt!r}")
    finally:
        holder.__exit__(None, None, None)
    # the client left: its request is aborted and the queue frees up
    Cluster.wait(lambda: sum(w["inflight_requests"] for w in c.admin_workers().values()) == 0, 5,
                 "abort on disconnect")
    still_serving(c)


def test_auth(c):
    """Router started with two --api-key values."""
    C = "/v1/completions"
    body = {"prompt": "hi", "max_tokens": 2}
    expect_error(c, C, body, 401)
    expect_error(c, C, body, 401, headers={"Authorization": "Bearer wrong"})
    expect_error(c, C, body, 401, headers={"Authorization": "Basic secret-one"})
    for key in ("secret-one", "secret-two"):
        r = c.post(C, body, headers={"Authorization": f"Bearer {key}"})
        check(r.status_code == 200, f"key {key}: {r.text}")
    try:
        client(c, "wrong").models.list()
        check(False, "no exception")
    except openai.AuthenticationError:
        pass
    check(len(client(c, "secret-two").models.list().data) == 1, "models with key")
    check(c.http.get("/health").status_code == 200, "health is open")
    check(c.http.get("/metrics").status_code == 200, "metrics are open")


# ---------------------------------------------------------------- concurrency

def test_concurrency(c):
    oc = client(c)
    N = 64
    results, errors = {}, []

    def run(i):
        try:
            kw = dict(model=MODEL, prompt=f"request {i} says", max_tokens=16, seed=1000 + i)
            text, chunks = "", 0
            for ch in oc.completions.create(stream=True, **kw):
                for x in ch.choices:
                    text += x.text
                    chunks += 1
            results[i] = text
        except Exception as ex:  # noqa: BLE001
            errors.append((i, repr(ex)))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not errors, f"errors: {errors[:3]}")
    check(len(results) == N, f"{len(results)} of {N} streams completed")
    # each stream equals its own non-streamed request (same seed): nothing lost or mixed up
    for i in range(0, N, 4):
        ref = oc.completions.create(model=MODEL, prompt=f"request {i} says", max_tokens=16,
                                    seed=1000 + i).choices[0].text
        check(results[i] == ref, f"stream {i} differs: {results[i]!r} vs {ref!r}")
    check(len(set(results.values())) > N // 2, "streams are distinct")
    Cluster.wait(lambda: sum(w["inflight_requests"] for w in c.admin_workers().values()) == 0, 5,
                 "nothing left in flight")


# ---------------------------------------------------------------- failures

def worker_of_inflight(c):
    for wid, w in c.admin_workers().items():
        if w["inflight_requests"] > 0:
            return wid
    return None


def test_failure(c):
    """Slow sim workers (20 tok/s): kill the worker serving a request."""
    oc = client(c)
    out = {}

    shared = " ".join(f"word{k}" for k in range(64))  # > 1 KV block: both land together

    def slow(name, stream):
        try:
            if stream:
                ev = []
                with c.http.stream("POST", "/v1/completions",
                                   json={"prompt": shared + name, "max_tokens": 400,
                                         "stream": True}) as r:
                    out[name + "-status"] = r.status_code
                    ev = sse_events(r)
                out[name] = ev
            else:
                r = c.post("/v1/completions", {"prompt": shared + name, "max_tokens": 400})
                out[name] = (r.status_code, r.json())
        except Exception as ex:  # noqa: BLE001
            out[name] = ex

    t1 = threading.Thread(target=slow, args=("plain", False))
    t1.start()
    Cluster.wait(lambda: worker_of_inflight(c) is not None, 5, "request in flight")
    victim = worker_of_inflight(c)
    # a streaming request with the same prefix: prefix affinity puts it on the same worker
    t2 = threading.Thread(target=slow, args=("streamed", True))
    t2.start()
    Cluster.wait(lambda: c.admin_workers()[victim]["inflight_requests"] == 2, 5, "both on one worker")
    time.sleep(0.3)  # the stream has begun
    c.kill_worker(victim)
    t1.join(30)
    status, body = out["plain"]
    check(status == 503 and "stopped responding" in body["error"]["message"], f"plain: {out['plain']}")
    h = c.http.get("/health").json()
    check(h["status"] == "degraded" and h["workers"]["dead"] == 1, f"health {h}")
    t2.join(30)
    ev = out["streamed"]
    check(out["streamed-status"] == 200 and len(ev) >= 3, f"stream began: {ev[:2]}")
    check(ev[-1] == "[DONE]" and "stopped responding" in json.loads(ev[-2])["error"]["message"],
          f"stream error event: {ev[-3:]}")
    # later requests succeed on the survivor
    for _ in range(4):
        r = oc.completions.create(model=MODEL, prompt="after", max_tokens=3)
        check(r.choices[0].finish_reason == "length", "after failure")
    # the worker comes back and registers again
    c.start_worker(victim)
    Cluster.wait(lambda: c.http.get("/health").json()["status"] == "ok", 10, "re-registration")
    # a client that disconnects: the worker request is aborted at once
    with httpx.Client(timeout=30) as h:
        with h.stream("POST", c.url + "/v1/completions",
                      json={"prompt": "bye", "max_tokens": 400, "stream": True}) as r:
            next(r.iter_lines())
    Cluster.wait(lambda: sum(w["inflight_requests"] for w in c.admin_workers().values()) == 0,
                 3, "abort after a streaming client left")
    try:
        httpx.post(c.url + "/v1/completions", json={"prompt": "bye", "max_tokens": 400},
                   timeout=0.5)
    except httpx.TimeoutException:
        pass
    Cluster.wait(lambda: sum(w["inflight_requests"] for w in c.admin_workers().values()) == 0,
                 3, "abort after a waiting client left")
    m = c.metrics()
    aborts = m[("vesta:router_client_aborts_total", frozenset())]
    check(aborts >= 2, f"client aborts counted: {aborts}")


def test_slow_step(c):
    """One sim worker whose every step blocks 4 s, under the default 3 s heartbeat timeout:
    heartbeats come from the worker's I/O thread, so the worker stays alive through the steps."""
    t0 = time.time()
    r = c.post("/v1/completions", {"prompt": "slow", "max_tokens": 2}, timeout=120)
    took = time.time() - t0
    check(r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length",
          f"request through 4 s steps: {r.status_code} {r.text[:300]}")
    check(took > 4.0, f"the steps really were slow ({took:.1f}s)")
    w = c.admin_workers()["w0"]
    check(w["deaths"] == 0 and w["state"] == "live", f"never declared dead: {w}")
    h = c.http.get("/health").json()
    check(h["status"] == "ok", f"health {h}")


def test_engine_stall(c):
    """--engine-stall-timeout-ms 1000, a sim worker whose steps block 3 s: the heartbeats keep
    coming but say the engine is stuck; the router fails the request the way a heartbeat
    timeout does, and takes the worker back once its engine has moved on."""
    r = c.post("/v1/completions", {"prompt": "stuck", "max_tokens": 3}, timeout=120)
    body = r.json()
    check(r.status_code == 503 and "stopped making progress" in body["error"]["message"],
          f"stalled worker's request fails: {r.status_code} {body}")
    check(c.admin_workers()["w0"]["deaths"] >= 1, "declared dead")
    # idle again (the request ends on the worker): busy_ms is 0, it registers again
    Cluster.wait(lambda: c.http.get("/health").json()["status"] == "ok", 60, "re-registration")
    w = c.admin_workers()["w0"]
    check(w["state"] == "live", f"back: {w}")


# ---------------------------------------------------------------- routing

def routed_to(c, fn):
    before = {k: v["routed"] for k, v in c.admin_workers().items()}
    fn()
    after = {k: v["routed"] for k, v in c.admin_workers().items()}
    return [k for k in after if after[k] > before.get(k, 0)]


def shared_prefix_workload(c, groups=3, per_group=4, models=None):
    """Returns {group: [worker of each request]}; group g asks for models[g] (default MODEL)."""
    oc = client(c)
    models = models or [MODEL] * groups
    system = {g: " ".join(f"rule{g}-{k}" for k in range(120)) for g in range(groups)}
    landed = {g: [] for g in range(groups)}
    for i in range(per_group):
        for g in range(groups):
            msgs = [{"role": "system", "content": system[g]},
                    {"role": "user", "content": f"question {i}"}]
            w = routed_to(c, lambda: oc.chat.completions.create(model=models[g], messages=msgs,
                                                                max_tokens=2))
            landed[g].append(w[0])
    return landed


def hits(c):
    return {k: v["prefix_cache_hits"] for k, v in c.admin_workers().items()}


def test_routing_affinity(c):
    landed = shared_prefix_workload(c)
    for g, ws in landed.items():
        check(len(set(ws)) == 1, f"group {g} spread over {ws}")
    check(len({ws[0] for ws in landed.values()}) == 2, f"groups use both workers: {landed}")
    time.sleep(0.4)  # a heartbeat carries the hit counters
    check(sum(hits(c).values()) > 0, f"prefix cache hits {hits(c)}")
    m = c.metrics()
    hit = m[("vesta:routing_decisions_total",
             frozenset({("policy", "prefix-affinity"), ("outcome", "prefix_hit")}))]
    check(hit >= 9, f"prefix_hit decisions {hit}")
    # the workers' KV events arrived in order, so routing used them alone: the router's block
    # keys (vesta_block_hash_chain over the chat-templated prompt) match the workers' own
    ws = c.admin_workers()
    check(all(w["kv_events_synced"] and w["kv_events_seq"] > 0 for w in ws.values()), f"synced {ws}")
    check(m[("vesta:prefix_index_entries", frozenset({("source", "events")}))] > 0, "event index")


LORA_ARGS = ["--enable-lora", "--lora-modules", "sql=/adapters/sql", "chat=/adapters/chat"]


def test_routing_lora(c):
    """Adapters by name (the simulator takes --lora-modules names without weights): listed under
    the base model; the same system prompt under the base model and two adapters makes three
    groups whose block keys differ (the adapter id is part of them), each kept on one worker and
    routed by the workers' own KV events, so the router's keys match the workers'."""
    models = {m.id: m for m in client(c).models.list().data}
    check(list(models) == [MODEL, "sql", "chat"], f"/v1/models: {list(models)}")
    check(getattr(models["sql"], "parent", None) == MODEL and getattr(models["sql"], "root", None) == "/adapters/sql",
          f"adapter card {models['sql']}")
    before = c.metrics()
    key = ("vesta:routing_decisions_total", frozenset({("policy", "prefix-affinity"), ("outcome", "prefix_hit")}))
    landed = shared_prefix_workload(c, groups=3, per_group=4, models=[MODEL, "sql", "chat"])
    for g, ws in landed.items():
        check(len(set(ws)) == 1, f"group {g} spread over {ws}")
    hit = c.metrics()[key] - before.get(key, 0)
    check(hit >= 9, f"prefix_hit decisions {hit}: adapter requests found their own blocks")
    expect_error(c, "/v1/completions", {"model": "sqlx", "prompt": "hi", "max_tokens": 2}, 404)


def test_lora_mismatch(c):
    """The router lists adapters its workers were not started with: a request for one is a 404
    naming the model (the worker's refusal), not a 500, and the workers stay live."""
    expect_error(c, "/v1/completions", {"model": "sql", "prompt": "hi", "max_tokens": 2}, 404, param="model",
                 contains="no LoRA adapter by that name")
    r = client(c).completions.create(model=MODEL, prompt="hi", max_tokens=2)
    check(r.choices[0].finish_reason == "length", "the base model still answers")
    check(all(w["state"] == "live" for w in c.admin_workers().values()), "workers still live")


def test_routing_round_robin(c):
    landed = shared_prefix_workload(c)
    for g, ws in landed.items():
        check(len(set(ws)) == 2, f"round-robin kept group {g} on {ws}")


def test_config(c):
    """Router started with --config YAML (served names, api keys, policy) plus a flag that
    overrides the YAML's policy."""
    oc = client(c, "yaml-key")
    check([m.id for m in oc.models.list().data] == ["alpha", "beta"], "served names from YAML")
    r = oc.completions.create(model="beta", prompt="hi", max_tokens=2)
    check(r.model == "beta", "a second served name is accepted and echoed")
    expect_error(c, "/v1/completions", {"prompt": "hi"}, 401)
    pol = c.http.get("/admin/workers", headers={"Authorization": "Bearer yaml-key"}).json()["policy"]
    check(pol == "least-load", f"the flag wins over the YAML: {pol}")


def config_args():
    import tempfile
    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    f.write("router:\n  api_keys: [yaml-key]\n  routing_policy: round-robin\n"
            "model:\n  served_model_name: [alpha, beta]\n")
    f.close()
    return ["--config", f.name, "--routing-policy", "least-load"]


GROUPS = {
    "endpoints": (dict(), test_endpoints),
    "streaming": (dict(), test_streaming),
    "errors": (dict(), test_errors),
    "limits": (dict(router_args=["--max-body-bytes", "4096", "--max-queued-requests", "1"],
                    sim_rate=20), test_limits),
    "auth": (dict(router_args=["--api-key", "secret-one", "--api-key", "secret-two"]), test_auth),
    "concurrency": (dict(sim_rate=200), test_concurrency),
    "config": (dict(router_args=config_args), test_config),
    "failure": (dict(router_args=["--heartbeat-timeout-ms", "600"], sim_rate=20), test_failure),
    "slow_step": (dict(workers=1, worker_args=["--sim-step-delay-ms", "4000"]), test_slow_step),
    "engine_stall": (dict(workers=1, router_args=["--engine-stall-timeout-ms", "1000"],
                          worker_args=["--sim-step-delay-ms", "3000"]), test_engine_stall),
    "routing_affinity": (dict(router_args=["--routing-policy", "prefix-affinity"]),
                         test_routing_affinity),
    "routing_lora": (dict(router_args=["--routing-policy", "prefix-affinity", *LORA_ARGS], worker_args=LORA_ARGS),
                     test_routing_lora),
    "lora_mismatch": (dict(router_args=LORA_ARGS), test_lora_mismatch),
    "routing_round_robin": (dict(router_args=["--routing-policy", "round-robin"]),
                            test_routing_round_robin),
}


def main():
    kw, fn = GROUPS[GROUP]
    kw = dict(kw)
    if callable(kw.get("router_args")):
        kw["router_args"] = kw["router_args"]()
    t0 = time.time()
    with Cluster(BIN, MODEL, **kw) as c:
        fn(c)
    print(f"router {GROUP}: {checks_passed()} checks passed in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
