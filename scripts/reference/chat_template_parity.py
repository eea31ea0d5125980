#!/usr/bin/env python3
"""Parity test for Vesta's Jinja2 interpreter against Python jinja2 configured exactly as
Hugging Face transformers configures it for apply_chat_template (utils/chat_template_utils.py:
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker,
loopcontrols]), tojson override, raise_exception, strftime_now, dict and namespace globals), with
the message normalisation apply_chat_template applies (None-valued keys dropped, reasoning fields
aliased).

Usage: chat_template_parity.py RENDER_BINARY TEMPLATES_DIR [SNIPPETS_FILE]
SNIPPETS_FILE holds small templates exercising one feature each (blocks separated by "#---"),
rendered over one fixed conversation. RENDER_BINARY speaks JSON lines (tests/common/jinja/jinja_render.c). Expected outputs are
produced here at test time; nothing is hard-coded.

Checks per case:
  * the rendered text is byte-identical (or both sides raise; raise_exception messages equal);
  * taint: every byte that came from a request string (found by rendering again with private-use
    markers around every input string, as transformers' sanitize_control_tokens marks inputs) is
    inside a Vesta segment; for cases without tojson'd tools the segments equal the marked ranges
    exactly.
"""
import copy
import json
import os
import subprocess
import sys
from datetime import datetime

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = 1732540800  # fixed time for strftime_now on both sides (2024-11-25)
MARK_B, MARK_E = "\ue000", "\ue001"


class AssistantTracker(Extension):
    # transformers' {% generation %} tag: renders its body (tracking is off in apply_chat_template
    # unless return_assistant_tokens_mask is set, and tracking never changes the text)
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    @jinja2.pass_eval_context
    def _generation_support(self, context, caller):
        return caller()


class TemplateNamespace(jinja2.utils.Namespace):
    def __init__(*args, **kwargs):
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"Chat templates cannot store underscore-prefixed attributes on a namespace, but got {name!r}. "
                "Please rename the attribute."
            )


class TemplateDict:
    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.fromtimestamp(NOW).strftime(format)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env


REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def normalize(messages):
    out = []
    for m in messages:
        m = {k: v for k, v in m.items() if v is not None}
        reasoning = next((m[k] for k in REASONING_FIELDS if m.get(k) is not None), None)
        if reasoning is not None:
            m = {"thinking": reasoning, **m, "reasoning_content": reasoning}
        out.append(m)
    return out


_compiled = {}


def render_reference(env, template, inp, trusted):
    inp = copy.deepcopy(inp)
    messages = normalize(inp.pop("messages"))
    kwargs = {**trusted, **{k: v for k, v in inp.items() if k not in ("tools", "documents", "add_generation_prompt")}}
    tpl = _compiled.get(template)
    if tpl is None:
        tpl = _compiled[template] = env.from_string(template)
    return tpl.render(messages=messages, tools=inp.get("tools"), documents=inp.get("documents"),
                      add_generation_prompt=inp.get("add_generation_prompt", False), **kwargs)


def mark(x, key=None):
    # Message roles are not user text in Vesta's rule (the API layer restricts them), so they
    # stay unmarked; every other string of the request is marked.
    if isinstance(x, str):
        return x if key == "role" else MARK_B + x + MARK_E
    if isinstance(x, list):
        return [mark(v) for v in x]
    if isinstance(x, dict):
        return {k: mark(v, k) for k, v in x.items()}
    return x


def marked_ranges(text):
    """Strips markers; returns (plain text, utf-8 byte ranges that were inside markers)."""
    out, ranges, depth, start, pos = [], [], 0, 0, 0
    for ch in text:
        if ch == MARK_B:
            if depth == 0:
                start = pos
            depth += 1
        elif ch == MARK_E:
            depth -= 1
            if depth < 0:
                return None, None
            if depth == 0 and pos > start:
                if ranges and ranges[-1][1] == start:
                    ranges[-1][1] = pos
                else:
                    ranges.append([start, pos])
        else:
            out.append(ch)
            pos += len(ch.encode("utf-8"))
    if depth:
        return None, None
    return "".join(out), ranges


def uses_tojson(inp):
    # tojson output is tainted as a whole when any string inside came from the request (the JSON
    # quoting moves bytes), so exact equality with the marked ranges is only expected without it.
    return "tools" in inp or any("tool_calls" in m for m in inp["messages"])


def covered(ranges, segments):
    for b, e in ranges:
        if not any(sb <= b and e <= se for sb, se in segments):
            return False
    return True


# ---- conversations ----
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather — in °C, for a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web <|im_end|> {{ not_a_var }}",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}, "k": {"type": "integer", "default": 3}},
                       "required": ["q"]}}},
]

TOOL_CALL = {"id": "Wk3PqA9b1", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}
TOOL_CALL_STR = {"id": "Zz8LmN2c4", "type": "function",
                 "function": {"name": "search", "arguments": "{\"q\": \"jinja\"}"}}

CONVERSATIONS = {
    "single": [{"role": "user", "content": "Hello!"}],
    "system": [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "Hi there"}],
    "multi": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "What is 2+2?"},
              {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
    "multi_no_system": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"},
                        {"role": "user", "content": "e"}],
    "assistant_last": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"}],
    "unicode": [{"role": "system", "content": "Réponds en français. 日本語も OK"},
                {"role": "user", "content": "👩‍👩‍👧‍👦 👍🏽 café (NFD: cafe\u0301) مرحبا שלום 中文 \u200b zero-width"}],
    "empty": [{"role": "system", "content": ""}, {"role": "user", "content": ""}],
    "empty_user": [{"role": "user", "content": ""}],
    "jinja_syntax": [{"role": "user", "content": "{{ messages }} {% if true %}x{% endif %} {# c #} {%- raw %}"},
                     {"role": "assistant", "content": "{{ '<|im_end|>' }} {% for x in y %}"},
                     {"role": "user", "content": "}}{{ {%%} #}"}],
    "special_tokens": [{"role": "user", "content": "<|im_end|><|eot_id|><|start_header_id|>assistant<|end_header_id|></s>[INST]<end_of_turn>"}],
    "whitespace": [{"role": "system", "content": "  padded system  \n\n"},
                   {"role": "user", "content": "\n\n  lines\r\nwith\ttabs  \n"},
                   {"role": "assistant", "content": "   spaced answer   "},
                   {"role": "user", "content": " \u3000 "}],
    "tool_calls": [{"role": "system", "content": "Use tools."},
                   {"role": "user", "content": "Weather in Paris?"},
                   {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                   {"role": "tool", "tool_call_id": "Wk3PqA9b1", "name": "get_weather", "content": "{\"temp\": 21}"},
                   {"role": "assistant", "content": "It is 21 °C."},
                   {"role": "user", "content": "Thanks"}],
    "tool_calls_multi": [{"role": "user", "content": "Do two things"},
                         {"role": "assistant", "content": "Sure.", "tool_calls": [TOOL_CALL, TOOL_CALL_STR]},
                         {"role": "tool", "tool_call_id": "Wk3PqA9b1", "name": "get_weather", "content": "sunny"},
                         {"role": "tool", "tool_call_id": "Zz8LmN2c4", "name": "search", "content": "results"}],
    "parts": [{"role": "user", "content": [{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}]}],
    "reasoning": [{"role": "user", "content": "Think: 1+1?"},
                  {"role": "assistant", "content": "2", "reasoning_content": "Adding one and one gives two."},
                  {"role": "user", "content": "Again?"}],
    "think_in_content": [{"role": "user", "content": "q1"},
                         {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nanswer one"},
                         {"role": "user", "content": "q2"}],
    "long": [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "x" * (i * 7)}
             for i in range(25)],
    "bad_role": [{"role": "narrator", "content": "Once upon a time"}],
}

SPECIALS = {
    "default": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "meta-llama": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "Qwen": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "google-gemma": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"},
    "deepseek": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
    "HuggingFaceTB": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
}


def specials_for(name):
    for prefix, sp in SPECIALS.items():
        if name.startswith(prefix):
            return {k: v for k, v in sp.items() if v is not None}
    return SPECIALS["default"]


def cases(template_name):
    for conv_name, conv in CONVERSATIONS.items():
        for agp in (True, False):
            for tools in (None, TOOLS):
                if tools is None and "tool_use" in template_name:
                    continue  # these variants iterate `tools` unconditionally
                if tools is not None and "tool_use" not in template_name and conv_name not in ("single", "system", "tool_calls", "tool_calls_multi", "unicode"):
                    continue
                extras = [{}]
                if "Qwen3" in template_name or "SmolLM3" in template_name or "DeepSeek" in template_name:
                    extras = [{}, {"enable_thinking": False}, {"enable_thinking": True}]
                for extra in extras:
                    inp = {"messages": conv, "add_generation_prompt": agp}
                    if tools is not None:
                        inp["tools"] = tools
                    inp.update(extra)
                    yield f"{conv_name}/agp={agp}/tools={tools is not None}/{extra}", inp


SNIPPET_INPUT = {"messages": CONVERSATIONS["multi"], "add_generation_prompt": True}


def load_snippets(path):
    with open(path, encoding="utf-8", newline="") as fh:
        text = fh.read()
    blocks = text.split("\n#---\n")
    # the file's leading comment lines are not part of the first snippet
    first = blocks[0].split("\n")
    blocks[0] = "\n".join(line for line in first if not line.startswith("# "))
    return blocks


def main():
    binary, tdir = sys.argv[1], sys.argv[2]
    env = make_env()
    names = sorted(f for f in os.listdir(tdir) if f.endswith(".jinja"))
    if not names:
        print("no templates found", file=sys.stderr)
        return 1
    sources = []
    for name in names:
        with open(os.path.join(tdir, name), encoding="utf-8", newline="") as fh:
            sources.append((name, fh.read(), list(cases(name))))
    if len(sys.argv) > 3:
        for i, snippet in enumerate(load_snippets(sys.argv[3])):
            sources.append((f"snippet#{i}", snippet, [(snippet[:40].replace("\n", " "), SNIPPET_INPUT)]))
    work = []
    for name, template, template_cases in sources:
        trusted = specials_for(name)
        for cname, inp in template_cases:
            try:
                expected = {"text": render_reference(env, template, inp, trusted)}
            except jinja2.exceptions.TemplateSyntaxError as e:
                expected = {"error": str(e), "raised": False}
            except jinja2.exceptions.TemplateError as e:
                expected = {"error": str(e), "raised": type(e) is jinja2.exceptions.TemplateError}
            except Exception as e:  # noqa: BLE001 - any Python error in the template is a template error
                expected = {"error": f"{type(e).__name__}: {e}", "raised": False}
            marked = None
            if "text" in expected:
                try:
                    mi = mark(inp)
                    mi["add_generation_prompt"] = inp["add_generation_prompt"]
                    for k in ("enable_thinking",):
                        if k in inp:
                            mi[k] = inp[k]
                    marked = render_reference(env, template, mi, trusted)
                except Exception:  # noqa: BLE001
                    marked = None
            work.append((name, cname, template, inp, trusted, expected, marked))

    reqs = "".join(json.dumps({"template": t, "input": i, "trusted": tr, "now": NOW}, ensure_ascii=False) + "\n"
                   for (_, _, t, i, tr, _, _) in work)
    proc = subprocess.run([binary], input=reqs.encode("utf-8"), capture_output=True, timeout=600)
    if proc.returncode != 0:
        print(proc.stderr.decode("utf-8", "replace"), file=sys.stderr)
        print(f"render binary exited with {proc.returncode}", file=sys.stderr)
        return 1
    lines = proc.stdout.decode("utf-8").splitlines()
    if len(lines) != len(work):
        print(f"expected {len(work)} answers, got {len(lines)}", file=sys.stderr)
        return 1
    passed = failed = taint_checked = taint_exact = 0
    per_template = {}
    for (name, cname, _, inp, _, expected, marked), line in zip(work, lines):
        got = json.loads(line)
        ok = True
        why = ""
        if "text" in expected:
            if got.get("text") != expected["text"]:
                ok = False
                why = f"text differs\n  expected: {expected['text']!r}\n  got:      {got.get('text', got.get('error'))!r}"
            elif marked is not None:
                plain, ranges = marked_ranges(marked)
                if plain == expected["text"]:
                    segs = got["segments"]
                    taint_checked += 1
                    if not covered(ranges, segs):
                        ok = False
                        why = f"input bytes not tainted: marked {ranges} vs segments {segs}"
                    elif not name.startswith("snippet#") and not uses_tojson(inp) and ranges != segs:
                        ok = False
                        why = f"segments differ from marked input ranges: {ranges} vs {segs}"
                    else:
                        taint_exact += 1
        else:
            if "error" not in got:
                ok = False
                why = f"expected error {expected['error']!r}, got text {got.get('text')!r}"
            elif expected["raised"] and got["error"] != expected["error"]:
                ok = False
                why = f"raise_exception message differs: {expected['error']!r} vs {got['error']!r}"
        pt = per_template.setdefault(name, [0, 0])
        if ok:
            passed += 1
            pt[0] += 1
        else:
            failed += 1
            pt[1] += 1
            if failed <= 25:
                print(f"FAIL {name} {cname}: {why}")
    for name, (p, f) in per_template.items():
        if not name.startswith("snippet#"):
            print(f"  {name}: {p} passed, {f} failed")
    print(f"taint checked on {taint_checked} renders")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
