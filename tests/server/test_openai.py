"""The OpenAI-compatible server (`freeze-attn serve`) driven by the real `openai` client from
PyPI, over loopback, on the real default model and a real library in a scratch folder.

Run by scripts/test: `python tests/server/test_openai.py` with FREEZE_ATTN_BIN pointing at the
built binary. Each test starts its own server process(es); the load test prints its latencies.
"""

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import openai

BIN = os.environ.get("FREEZE_ATTN_BIN", "target/debug/freeze-attn")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def models_dir():
    if os.environ.get("FREEZE_ATTN_MODELS"):
        return os.environ["FREEZE_ATTN_MODELS"]
    path = subprocess.run([BIN, "fetch-model"], check=True, capture_output=True, text=True).stdout.strip()
    return os.path.dirname(path)


MODELS = models_dir()


class Server:
    """A `freeze-attn serve` process on a free loopback port, with its own library."""

    def __init__(self, home, *args, token=None, env=None):
        env = dict(os.environ, FREEZE_ATTN_HOME=home, FREEZE_ATTN_MODELS=MODELS, RUST_LOG="warn", **(env or {}))
        env.pop("FREEZE_ATTN_TOKEN", None)
        cmd = [BIN, "serve", "--port", "0", *args]
        if token:
            cmd += ["--token", token]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()}")
        self.url = line.split()[2]
        self.token = token or "unused"
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key=self.token, max_retries=0, timeout=120)
        self.model = self.client.models.list().data[0].id

    def raw(self, method, path, body=None, headers=None, data=None):
        """(status, parsed JSON body) of a plain HTTP request."""
        if data is None and body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if r.headers.get("content-type", "").startswith("application/json") else raw)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


SYSTEM = ("You are a patient tutor of astronomy. You answer in one or two short sentences, "
          "with plain words, and you never make up facts. ") * 4
TURNS = ["What is the largest planet in the solar system?", "And the smallest?", "Which one has rings?"]


def conversation(server, upto, greedy_tokens=24):
    """Messages for turn `upto` (0-based): the system prompt, then each earlier turn with the
    server's own greedy answer, then the new question."""
    messages = [{"role": "system", "content": SYSTEM}]
    for q in TURNS[:upto]:
        messages.append({"role": "user", "content": q})
        r = server.client.chat.completions.create(model=server.model, messages=messages, max_tokens=greedy_tokens, temperature=0)
        messages.append({"role": "assistant", "content": r.choices[0].message.content})
    messages.append({"role": "user", "content": TURNS[upto]})
    return messages


class OpenAIClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.home = tempfile.TemporaryDirectory()
        cls.server = Server(cls.home.name)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.home.cleanup()

    def test_chat_completion_reports_usage_and_says_something(self):
        s = self.server
        r = s.client.chat.completions.create(model=s.model, messages=[{"role": "system", "content": "You are a helpful assistant."},
                                                                      {"role": "user", "content": "What is the capital of France?"}],
                                             max_tokens=20, temperature=0)
        text = r.choices[0].message.content
        self.assertIn("Paris", text, "the default model knows this")
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertGreater(r.usage.prompt_tokens, 5)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
        self.assertIsNotNone(r.usage.prompt_tokens_details)

    def test_streaming_gives_the_same_text_as_a_whole_response(self):
        s = self.server
        messages = [{"role": "user", "content": "Name three colours of the rainbow."}]
        whole = s.client.chat.completions.create(model=s.model, messages=messages, max_tokens=24, temperature=0)
        chunks = list(s.client.chat.completions.create(model=s.model, messages=messages, max_tokens=24, temperature=0,
                                                        stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, whole.choices[0].message.content)
        self.assertEqual([c.choices[0].finish_reason for c in chunks if c.choices][-1], whole.choices[0].finish_reason)
        usage = chunks[-1].usage
        self.assertIsNotNone(usage, "include_usage adds a last chunk with usage")
        self.assertGreaterEqual(usage.prompt_tokens_details.cached_tokens, usage.prompt_tokens - 1,
                                "the same prompt again resumes from the first request's state")

    def test_text_completion_streams_and_stops_at_a_stop_string(self):
        s = self.server
        r = s.client.completions.create(model=s.model, prompt="1, 2, 3, 4,", max_tokens=30, temperature=0, stop=["8"])
        self.assertEqual(r.object, "text_completion")
        self.assertNotIn("8", r.choices[0].text)
        self.assertEqual(r.choices[0].finish_reason, "stop")
        streamed = "".join(c.choices[0].text for c in s.client.completions.create(
            model=s.model, prompt="1, 2, 3, 4,", max_tokens=30, temperature=0, stop=["8"], stream=True) if c.choices)
        self.assertEqual(streamed, r.choices[0].text)

    def test_log_probabilities_whole_streamed_and_in_both_formats(self):
        s = self.server
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        ask = dict(model=s.model, messages=messages, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3)
        r = s.client.chat.completions.create(**ask)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens, "one per generated token")
        self.assertEqual("".join(t.token for t in content), r.choices[0].message.content)
        for t in content:
            self.assertLess(t.logprob, 1e-6)
            self.assertEqual(bytes(t.bytes).decode("utf-8"), t.token)
            self.assertEqual(len(t.top_logprobs), 3)
            top = [a.logprob for a in t.top_logprobs]
            self.assertEqual(top, sorted(top, reverse=True), "most likely first")
            self.assertLessEqual(sum(2.718281828 ** x for x in top), 1.0 + 1e-4)
            # Greedy: the chosen token is the most likely one.
            self.assertEqual((t.top_logprobs[0].token, t.top_logprobs[0].logprob), (t.token, t.logprob))
        # Streamed, each token once, with the same values.
        chunks = list(s.client.chat.completions.create(**ask, stream=True))
        streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
        self.assertEqual([(t.token, t.logprob) for t in streamed], [(t.token, t.logprob) for t in content])
        # The model's distribution, not the sampler's: the first step's alternatives are the same
        # at temperature 1.5 with a top-k of 2.
        hot = s.client.chat.completions.create(**dict(ask, temperature=1.5, max_tokens=1, seed=3),
                                               extra_body={"top_k": 2})
        self.assertEqual([(a.token, a.logprob) for a in hot.choices[0].logprobs.content[0].top_logprobs],
                         [(a.token, a.logprob) for a in content[0].top_logprobs])
        # Not asked for: none.
        plain = s.client.chat.completions.create(model=s.model, messages=messages, max_tokens=4, temperature=0)
        self.assertIsNone(plain.choices[0].logprobs)
        # Text completions: the legacy format, whole and streamed.
        t = s.client.completions.create(model=s.model, prompt="1, 2, 3, 4,", max_tokens=8, temperature=0, logprobs=2)
        lp = t.choices[0].logprobs
        self.assertEqual("".join(lp.tokens), t.choices[0].text)
        self.assertEqual(len(lp.token_logprobs), len(lp.tokens))
        offsets = [0]
        for tok in lp.tokens[:-1]:
            offsets.append(offsets[-1] + len(tok))
        self.assertEqual(lp.text_offset, offsets)
        for tok, p, alts in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
            self.assertEqual(len(alts), 2)
            self.assertEqual(alts[tok], p, "greedy: the token is among its step's best two, with its own value")
        parts = [c.choices[0].logprobs for c in s.client.completions.create(
            model=s.model, prompt="1, 2, 3, 4,", max_tokens=8, temperature=0, logprobs=2, stream=True)
            if c.choices and c.choices[0].logprobs]
        self.assertEqual([x for p in parts for x in p.tokens], lp.tokens)
        self.assertEqual([x for p in parts for x in p.token_logprobs], lp.token_logprobs)
        self.assertEqual([x for p in parts for x in p.text_offset], lp.text_offset)
        # A stop string holds text back, so streamed chunks end inside tokens: the offsets still
        # count the tokens, as the whole response does.
        story = "Once upon a time, in a small village at the edge of a great forest, there lived"
        ask = dict(model=s.model, prompt=story, max_tokens=24, temperature=0, logprobs=1, stop=["He was known"])
        whole = s.client.completions.create(**ask).choices[0].logprobs
        parts = [c.choices[0].logprobs for c in s.client.completions.create(**ask, stream=True)
                 if c.choices and c.choices[0].logprobs]
        self.assertGreater(len(parts), 2)
        self.assertEqual([x for p in parts for x in p.tokens], whole.tokens)
        self.assertEqual([x for p in parts for x in p.text_offset], whole.text_offset)

    def test_echo_scores_the_prompt_as_a_scorer_asks(self):
        """What lm-evaluation-harness's `local-completions` sends: the prompt as token ids (or
        text), `echo`, `logprobs: 1`, `max_tokens` 0 or 1; it sums the continuation's token
        log-probabilities and checks each was the most likely."""
        s = self.server
        prompt = "The capital of France is Paris"
        r = s.client.completions.create(model=s.model, prompt=prompt, echo=True, logprobs=1, max_tokens=1, temperature=0)
        ch = r.choices[0]
        lp = ch.logprobs
        n = r.usage.prompt_tokens
        self.assertTrue(ch.text.startswith(prompt) and len(ch.text) > len(prompt), ch.text)
        self.assertEqual(len(lp.tokens), n + 1)
        self.assertEqual("".join(lp.tokens), ch.text)
        self.assertEqual(lp.text_offset, [sum(len(t) for t in lp.tokens[:i]) for i in range(n + 1)])
        self.assertIsNone(lp.token_logprobs[0])
        self.assertIsNone(lp.top_logprobs[0])
        for tok, l, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:]):
            self.assertLess(l, 0)
            self.assertEqual(len(top), 1)
            self.assertGreaterEqual(max(top.values()), l - 1e-6)
            if tok in top:
                self.assertAlmostEqual(top[tok], l, places=5)
        # The model knows its capitals: " Paris" was its first choice, " London" far less likely.
        self.assertEqual(lp.tokens[n - 1], " Paris")
        self.assertEqual(max(lp.top_logprobs[n - 1], key=lp.top_logprobs[n - 1].get), " Paris")
        london = s.client.completions.create(model=s.model, prompt="The capital of France is London", echo=True,
                                             logprobs=1, max_tokens=0).choices[0].logprobs
        self.assertLess(london.token_logprobs[-1], lp.token_logprobs[n - 1] - 2)

        # The generated token's log-probability is the one a request without echo reports.
        plain = s.client.completions.create(model=s.model, prompt=prompt, logprobs=1, max_tokens=1, temperature=0).choices[0]
        self.assertEqual(plain.logprobs.tokens, lp.tokens[n:])
        self.assertAlmostEqual(plain.logprobs.token_logprobs[0], lp.token_logprobs[n], places=3)

        # max_tokens 0: the prompt scored, nothing generated.
        status, body = s.raw("POST", "/v1/completions", {"prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 0})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["choices"][0]["text"], prompt)
        self.assertEqual(body["usage"]["completion_tokens"], 0)
        self.assertEqual(body["choices"][0]["logprobs"]["token_logprobs"], lp.token_logprobs[:n])

        # Token ids, as a scorer that tokenizes itself sends them (here llama.cpp's tokenization
        # from the fixture): used as they are, and scored as the same text is.
        with open(os.path.join(REPO, "tests", "fixtures", "smollm2_llamacpp.json")) as f:
            fx = json.load(f)
        case = next(c for c in fx["tokenize"] if len(c["ids"]) > 8 and c["text"].isascii())
        by_ids = s.client.completions.create(model=s.model, prompt=[case["ids"]], echo=True, logprobs=1, max_tokens=0)
        by_text = s.client.completions.create(model=s.model, prompt=case["text"], echo=True, logprobs=1, max_tokens=0)
        self.assertEqual(by_ids.usage.prompt_tokens, len(case["ids"]))
        self.assertEqual(by_ids.choices[0].text, case["text"])
        self.assertEqual(by_ids.choices[0].logprobs.token_logprobs, by_text.choices[0].logprobs.token_logprobs)
        status, body = s.raw("POST", "/v1/completions", {"prompt": [1, 2, 10 ** 7], "max_tokens": 1})
        self.assertEqual(status, 400, body)
        self.assertIn("vocabulary", body["error"]["message"])

    def test_a_list_of_prompts_is_answered_as_separate_requests_are(self):
        """A batch, as lm-evaluation-harness sends one (`prompt` a list of texts or of token-id
        lists): choice i of prompt k at index k * n + i, each what the prompt alone gives, whole
        and streamed; scored prompts score as they do alone."""
        s = self.server
        prompts = ["The capital of France is", "Water boils at", "Once upon a time"]
        alone = [s.client.completions.create(model=s.model, prompt=p, max_tokens=8, temperature=0, logprobs=1)
                 for p in prompts]
        r = s.client.completions.create(model=s.model, prompt=prompts, n=2, max_tokens=8, temperature=0, logprobs=1)
        self.assertEqual([c.index for c in r.choices], list(range(6)))
        for k, a in enumerate(alone):
            for i in range(2):
                ch = r.choices[k * 2 + i]
                self.assertEqual(ch.text, a.choices[0].text, (k, i))
                self.assertEqual(ch.logprobs.tokens, a.choices[0].logprobs.tokens)
        self.assertEqual(r.usage.prompt_tokens, sum(a.usage.prompt_tokens for a in alone))
        self.assertEqual(r.usage.completion_tokens, 2 * sum(a.usage.completion_tokens for a in alone))
        # Streamed: each index's pieces make its text.
        texts, finish = {}, {}
        for c in s.client.completions.create(model=s.model, prompt=prompts, max_tokens=8, temperature=0, stream=True):
            for ch in c.choices:
                texts[ch.index] = texts.get(ch.index, "") + ch.text
                finish[ch.index] = ch.finish_reason or finish.get(ch.index)
        self.assertEqual(texts, {k: a.choices[0].text for k, a in enumerate(alone)})
        self.assertEqual(finish, {k: a.choices[0].finish_reason for k, a in enumerate(alone)})
        # Scoring a batch of token-id prompts (echo, max_tokens 0; llama.cpp's tokenizations
        # from the fixture): each as it scores alone.
        with open(os.path.join(REPO, "tests", "fixtures", "smollm2_llamacpp.json")) as f:
            cases = [c for c in json.load(f)["tokenize"] if len(c["ids"]) > 4 and c["text"].isascii()][:3]
        self.assertEqual(len(cases), 3)
        alone = [s.client.completions.create(model=s.model, prompt=[c["ids"]], echo=True, logprobs=1, max_tokens=0)
                 for c in cases]
        status, body = s.raw("POST", "/v1/completions", {"prompt": [c["ids"] for c in cases], "echo": True,
                                                          "logprobs": 1, "max_tokens": 0})
        self.assertEqual(status, 200, body)
        self.assertEqual([c["text"] for c in body["choices"]], [c["text"] for c in cases])
        self.assertEqual([c["logprobs"]["token_logprobs"] for c in body["choices"]],
                         [a.choices[0].logprobs.token_logprobs for a in alone])
        self.assertEqual(body["usage"]["prompt_tokens"], sum(len(c["ids"]) for c in cases))
        # What a list cannot do: freeze one node, be empty, be too long.
        for body, param in [({"prompt": prompts, "freeze": "batch"}, "freeze"), ({"prompt": []}, "prompt"),
                            ({"prompt": ["a"] * 129}, "prompt")]:
            status, e = s.raw("POST", "/v1/completions", dict(body, max_tokens=1))
            self.assertEqual(status, 400, e)
            self.assertEqual(e["error"]["param"], param)

    def test_json_mode_gives_json_objects(self):
        s = self.server
        msgs = [{"role": "user", "content": "Give me a JSON object describing a book, with the keys title, author and year."}]
        # Left to itself the model wraps its JSON in a Markdown fence and talks after it.
        plain = s.client.chat.completions.create(model=s.model, messages=msgs, temperature=0, max_tokens=120)
        with self.assertRaises(ValueError):
            json.loads(plain.choices[0].message.content)
        fmt = {"type": "json_object"}
        r = s.client.chat.completions.create(model=s.model, messages=msgs, temperature=0.9, seed=3, n=3, max_tokens=160,
                                             response_format=fmt)
        objects = []
        for ch in r.choices:
            if ch.finish_reason == "stop":
                objects.append(json.loads(ch.message.content))
                self.assertIsInstance(objects[-1], dict)
            else:
                self.assertEqual(ch.finish_reason, "length")
                self.assertTrue(ch.message.content.lstrip().startswith("{"), ch.message.content)
        self.assertGreaterEqual(len(objects), 2, r.choices)
        self.assertTrue(any("title" in o for o in objects), objects)
        # Streamed: the same object.
        whole = s.client.chat.completions.create(model=s.model, messages=msgs, temperature=0, max_tokens=160, response_format=fmt)
        streamed = "".join(c.choices[0].delta.content or "" for c in s.client.chat.completions.create(
            model=s.model, messages=msgs, temperature=0, max_tokens=160, response_format=fmt, stream=True) if c.choices)
        self.assertEqual(streamed, whole.choices[0].message.content)
        self.assertIsInstance(json.loads(streamed), dict)

    def test_structured_outputs_parse_into_pydantic_models(self):
        """`response_format` from a Pydantic model (what the SDK's `.parse()` sends: nested
        objects through `$ref`, a `Literal` enum, an optional field, a bounded list, strings
        with a length bound, a date, numbers with bounds): every reply that ends is parsed and
        validated by Pydantic."""
        import datetime
        from typing import Annotated, Literal, Optional

        import openai.lib._pydantic
        from pydantic import BaseModel, Field

        class Toy(BaseModel):
            name: Annotated[str, Field(max_length=20)]
            squeaks: bool

        class Cat(BaseModel):
            name: Annotated[str, Field(max_length=20)]
            born: datetime.date
            age: Annotated[int, Field(ge=1, le=25)]
            weight_kg: Annotated[float, Field(gt=0, lt=12)]
            color: Literal["black", "white", "ginger", "grey"]
            indoor: bool
            nickname: Optional[Annotated[str, Field(max_length=12)]]
            toys: Annotated[list[Toy], Field(max_length=3)]

        s = self.server
        msgs = [{"role": "user", "content": "Describe a cat as JSON."}]
        # The SDK's own path (it raises if the reply is cut off, so greedy and one choice).
        r = s.client.chat.completions.parse(model=s.model, messages=msgs, response_format=Cat, temperature=0,
                                            max_tokens=300)
        self.assertIsInstance(r.choices[0].message.parsed, Cat)
        # Sampled: every reply that ends validates.
        fmt = {"type": "json_schema", "json_schema": {"name": "Cat", "strict": True,
                                                      "schema": openai.lib._pydantic.to_strict_json_schema(Cat)}}
        r = s.client.chat.completions.create(model=s.model, messages=msgs, response_format=fmt, temperature=0.8,
                                             seed=1, n=3, max_tokens=300)
        cats = [Cat.model_validate_json(ch.message.content) for ch in r.choices if ch.finish_reason == "stop"]
        self.assertGreaterEqual(len(cats), 2, [ch.message.content for ch in r.choices])
        for cat in cats:
            self.assertEqual(list(cat.model_dump()), ["name", "born", "age", "weight_kg", "color", "indoor", "nickname", "toys"])
        # Without the schema the same request gives other keys (the schema is what shaped them).
        free = s.client.chat.completions.create(model=s.model, messages=msgs, temperature=0.8, seed=1, n=3,
                                                max_tokens=300, response_format={"type": "json_object"})
        with self.assertRaises(Exception):
            for ch in free.choices:
                Cat.model_validate_json(ch.message.content)
        # Streamed: the same text, which Pydantic reads.
        whole = s.client.chat.completions.create(model=s.model, messages=msgs, temperature=0, max_tokens=300,
                                                 response_format=fmt)
        streamed = "".join(c.choices[0].delta.content or "" for c in s.client.chat.completions.create(
            model=s.model, messages=msgs, temperature=0, max_tokens=300, response_format=fmt, stream=True) if c.choices)
        self.assertEqual(streamed, whole.choices[0].message.content)
        Cat.model_validate_json(streamed)
        # What cannot be followed is refused by name, with where it is.
        for schema, says in [({"type": "object", "properties": {"home": {"type": "string", "format": "uri"}}},
                              '`format` "uri" is not supported in response_format schemas'),
                             ({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}},
                              "`multipleOf` is not supported in response_format schemas (at #/properties/n)"),
                             ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1.5, "maximum": 1.9}}},
                              "no integer is within the schema's minimum and maximum (at #/properties/n)"),
                             ({"type": "array"}, "must be JSON objects"),
                             ({"$ref": "#/$defs/Missing"}, "points to nothing")]:
            body = {"messages": msgs, "max_tokens": 4,
                    "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
            status, e = s.raw("POST", "/v1/chat/completions", body)
            self.assertEqual(status, 400, e)
            self.assertEqual(e["error"]["param"], "response_format")
            self.assertIn(says, e["error"]["message"])

    def test_three_alternatives_from_one_state(self):
        s = self.server
        r = s.client.chat.completions.create(model=s.model, messages=[{"role": "user", "content": "Invent a name for a cat."}],
                                             max_tokens=16, temperature=1.0, n=3, seed=7)
        self.assertEqual([c.index for c in r.choices], [0, 1, 2])
        texts = {c.message.content for c in r.choices}
        self.assertGreater(len(texts), 1, f"seeds 7, 8, 9 sample differently: {texts}")
        again = s.client.chat.completions.create(model=s.model, messages=[{"role": "user", "content": "Invent a name for a cat."}],
                                                 max_tokens=16, temperature=1.0, n=3, seed=7)
        self.assertEqual([c.message.content for c in again.choices], [c.message.content for c in r.choices], "a seed repeats")

    def test_state_and_freeze_round_trip(self):
        s = self.server
        first = s.client.chat.completions.create(
            model=s.model, messages=[{"role": "system", "content": "You are a pirate. You always talk like a pirate."},
                                     {"role": "user", "content": "Who are you?"}],
            max_tokens=24, temperature=0, extra_body={"freeze": "pirate"})
        pirate = first.model_extra["frozen"]
        self.assertIsInstance(pirate, int)
        status, node = s.raw("GET", "/v1/states/pirate")
        self.assertEqual((status, node["id"], node["kind"]), (200, pirate, "chat"))
        r = s.client.chat.completions.create(model=s.model, messages=[{"role": "user", "content": "Where is your ship?"}],
                                             max_tokens=24, temperature=0, extra_body={"state": "pirate", "freeze": "ship"})
        self.assertEqual(r.model_extra["resumed_from"], pirate)
        self.assertGreaterEqual(r.usage.prompt_tokens_details.cached_tokens, node["token_count"] - 1)
        status, child = s.raw("GET", f"/v1/states/{r.model_extra['frozen']}")
        self.assertEqual((status, child["parent"]), (200, pirate))
        messages = [m["content"] for m in child["transcript"]["messages"]]
        self.assertIn("Where is your ship?", messages)
        self.assertIn(r.choices[0].message.content, messages)
        status, tree = s.raw("GET", "/v1/states")
        names = {n["name"] for n in tree["data"]}
        self.assertEqual(names, {"pirate", "ship"}, "cache nodes are hidden from the tree")
        status, everything = s.raw("GET", "/v1/states?all=true")
        self.assertTrue(any(n["kind"] == "cache" for n in everything["data"]))

    def test_states_endpoints_fork_rename_tag_export_import_delete(self):
        s = self.server
        status, made = s.raw("POST", "/v1/states", {"name": "doc", "text": "The tower is 330 metres tall and was finished in 1889."})
        self.assertEqual(status, 201, made)
        self.assertGreater(made["token_count"], 5)
        status, forked = s.raw("POST", "/v1/states/doc/fork", {"name": "doc copy"})
        self.assertEqual((status, forked["parent"]), (201, made["id"]))
        self.assertEqual(s.raw("PATCH", f"/v1/states/{forked['id']}", {"name": "renamed"})[1]["name"], "renamed")
        self.assertEqual(s.raw("POST", "/v1/states/renamed/tags", {"tag": "facts"})[1]["tags"], ["facts"])
        status, bundle = s.raw("GET", "/v1/states/doc/export")
        self.assertEqual(status, 200)
        self.assertGreater(len(bundle), 1000)
        status, imported = s.raw("POST", "/v1/states/import?name=doc%20again", data=bundle)
        self.assertEqual((status, imported["name"], imported["token_count"]), (201, "doc again", made["token_count"]))
        status, d = s.raw("DELETE", "/v1/states/doc?mode=subtree")
        self.assertEqual((status, len(d["deleted"])), (200, 2))
        self.assertEqual(s.raw("GET", "/v1/states/renamed")[0], 404)
        # A damaged bundle is refused whole, and nothing is added.
        broken = bytearray(bundle)
        broken[len(broken) // 2] ^= 0xFF
        status, err = s.raw("POST", "/v1/states/import?name=broken", data=bytes(broken))
        self.assertEqual(status, 400, err)
        self.assertNotIn("broken", {n["name"] for n in s.raw("GET", "/v1/states")[1]["data"]})
        # Create with progress as server-sent events.
        status, raw = s.raw("POST", "/v1/states", {"name": "primed", "messages": [{"role": "system", "content": "Be brief."}], "stream": True})
        events = [json.loads(l[5:]) for l in raw.decode().splitlines() if l.startswith("data:")]
        self.assertTrue(any("done" in e for e in events), events)
        self.assertEqual(events[-1]["node"]["name"], "primed")


CHATML_TOOLS = os.path.join(REPO, "assets", "templates", "chatml-tools.jinja")
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def weather_shots(question):
    """Two questions, each answered with a call to get_weather, then `question`: the 135M
    default model, greedy, answers a third such question with the same kind of call."""
    msgs = [{"role": "system", "content": "You are a weather assistant. Always call get_weather."}]
    for i, city in enumerate(["Paris", "Berlin"]):
        msgs += [{"role": "user", "content": f"What is the weather in {city}?"},
                 {"role": "assistant", "content": None, "tool_calls": [{"id": f"call_{i}", "type": "function", "function": {
                     "name": "get_weather", "arguments": json.dumps({"city": city})}}]}]
    msgs.append({"role": "user", "content": question})
    return msgs


class FunctionCalling(unittest.TestCase):
    """`tools` through the chat template (the default model's own template has none, so the server
    runs with --chat-template assets/templates/chatml-tools.jinja), the model's call read back as
    `tool_calls`, whole and streamed, and the conversation going on with the call and its result."""

    @classmethod
    def setUpClass(cls):
        cls.home = tempfile.TemporaryDirectory()
        cls.server = Server(cls.home.name, "--chat-template", CHATML_TOOLS)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.home.cleanup()

    def ask(self, messages, **kw):
        kw.setdefault("max_tokens", 48)
        return self.server.client.chat.completions.create(model=self.server.model, messages=messages, tools=WEATHER,
                                                          temperature=0, **kw)

    def test_the_models_call_comes_back_as_tool_calls_whole_and_streamed(self):
        msgs = weather_shots("What is the weather in Tokyo?")
        r = self.ask(msgs)
        ch = r.choices[0]
        self.assertEqual(ch.finish_reason, "tool_calls", ch.message)
        self.assertIsNone(ch.message.content)
        [call] = ch.message.tool_calls
        self.assertEqual(call.type, "function")
        self.assertEqual(call.function.name, "get_weather")
        self.assertEqual(json.loads(call.function.arguments), {"city": "Tokyo"})
        self.assertTrue(call.id.startswith("call_"))

        # Streamed: no text, one delta with the whole call, the same call.
        text, calls, finish = "", {}, None
        for chunk in self.ask(msgs, stream=True):
            d = chunk.choices[0].delta
            text += d.content or ""
            for tc in d.tool_calls or []:
                calls.setdefault(tc.index, []).append(tc)
            finish = chunk.choices[0].finish_reason or finish
        self.assertEqual(text, "")
        self.assertEqual(finish, "tool_calls")
        self.assertEqual([(c[0].function.name, c[0].function.arguments) for c in calls.values()],
                         [(call.function.name, call.function.arguments)])

        # tool_choice "none": the tools are shown, the reply is text (the call as the model wrote it).
        r = self.ask(msgs, tool_choice="none")
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertIsNone(r.choices[0].message.tool_calls)
        self.assertIn('"get_weather"', r.choices[0].message.content)

        # The conversation goes on with the call and its result; the state of the first request
        # (which holds the call the model wrote) is resumed, not processed again.
        msgs.append(ch.message.model_dump(exclude_none=True))
        msgs.append({"role": "tool", "tool_call_id": call.id, "content": "25 degrees and clear"})
        r2 = self.ask(msgs)
        self.assertEqual(r2.choices[0].finish_reason, "stop")
        self.assertTrue(r2.choices[0].message.content.strip(), r2.choices[0].message)
        self.assertGreater(r2.usage.prompt_tokens_details.cached_tokens, r.usage.prompt_tokens,
                           "the first request's prompt and the call were resumed")

        # Frozen, the call is part of the node's conversation: the CLI shows it and the Markdown
        # export writes it (the app shows it the same way).
        self.ask(msgs[:-2], extra_body={"freeze": "weather-call"})
        env = dict(os.environ, FREEZE_ATTN_HOME=self.home.name, FREEZE_ATTN_MODELS=MODELS)
        cli = lambda *a: subprocess.run([BIN, "states", *a, "weather-call"], env=env, capture_output=True, text=True,
                                        timeout=120, check=True).stdout
        shown = cli("show")
        self.assertIn(f"assistant: calls get_weather({call.function.arguments})", shown)
        self.assertNotIn("assistant: \n", shown, "no empty line for a reply that only calls")
        md = cli("markdown")
        self.assertIn(f"**Model**\n\nCalls `get_weather` with:\n\n```json\n{call.function.arguments}\n```", md)

    def test_a_text_reply_streams_the_same_text_with_tools_offered(self):
        # After a call's result the model answers in text; for Lima it starts with "<", which is
        # held back as a possible <tool_call> and then sent: streamed and whole replies agree.
        starts = []
        for city in ["Tokyo", "Lima"]:
            msgs = weather_shots(f"Is it raining in {city} right now?")
            [call] = self.ask(msgs).choices[0].message.tool_calls
            msgs += [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                     {"role": "tool", "tool_call_id": call.id, "content": "25 degrees and clear"}]
            whole = self.ask(msgs).choices[0]
            self.assertEqual(whole.finish_reason, "stop")
            streamed = "".join(c.choices[0].delta.content or "" for c in self.ask(msgs, stream=True) if c.choices)
            self.assertEqual(streamed, whole.message.content)
            starts.append(whole.message.content[:1])
        self.assertIn("<", starts, "one reply went through the hold-back")

        # A call cut off by max_tokens is text, held back to the end and then sent.
        msgs = weather_shots("What is the weather in Tokyo?")
        whole = self.ask(msgs, max_tokens=6).choices[0]
        self.assertEqual(whole.finish_reason, "length")
        self.assertIsNone(whole.message.tool_calls)
        self.assertTrue(whole.message.content.startswith("<tool_call>"), whole.message.content)
        streamed = "".join(c.choices[0].delta.content or "" for c in self.ask(msgs, max_tokens=6, stream=True) if c.choices)
        self.assertEqual(streamed, whole.message.content)

    def test_a_forced_call_is_made_where_the_model_would_not_call(self):
        """tool_choice "required" and a named function: the reply is one call (generation
        constrained to the template's call format and the tools' parameter schemas), where
        left to itself the model answers in text."""
        msgs = [{"role": "user", "content": "Hello! Who are you?"}]
        tools = WEATHER + [{"type": "function", "function": {
            "name": "set_alarm", "description": "Sets an alarm",
            "parameters": {"type": "object", "properties": {
                "hour": {"type": "integer", "minimum": 0, "maximum": 23},
                "minute": {"type": "integer", "minimum": 0, "maximum": 59},
                "days": {"type": "array", "items": {"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}, "maxItems": 7}},
                "required": ["hour", "minute"]}}}]
        auto = self.ask(msgs)
        self.assertEqual(auto.choices[0].finish_reason, "stop")
        self.assertIsNone(auto.choices[0].message.tool_calls, "auto: the model answers in text")
        ask = dict(model=self.server.model, messages=msgs, tools=tools, max_tokens=120)
        r = self.server.client.chat.completions.create(tool_choice="required", temperature=0.8, seed=2, n=3, **ask)
        for ch in r.choices:
            self.assertEqual(ch.finish_reason, "tool_calls", ch.message)
            [call] = ch.message.tool_calls
            self.assertIn(call.function.name, ["get_weather", "set_alarm"])
            args = json.loads(call.function.arguments)
            if call.function.name == "get_weather":
                self.assertIsInstance(args["city"], str)
            else:
                self.assertIn(args["hour"], range(24))
                self.assertIn(args["minute"], range(60))
        named = {"type": "function", "function": {"name": "set_alarm"}}
        r = self.server.client.chat.completions.create(tool_choice=named, temperature=0, **ask)
        [call] = r.choices[0].message.tool_calls
        self.assertEqual(call.function.name, "set_alarm")
        args = json.loads(call.function.arguments)
        self.assertEqual(list(args)[:2], ["hour", "minute"])
        self.assertTrue(0 <= args["hour"] <= 23 and 0 <= args["minute"] <= 59, args)
        # Streamed: the same call in one delta.
        streamed = [tc for c in self.server.client.chat.completions.create(tool_choice=named, temperature=0, stream=True, **ask)
                    if c.choices for tc in c.choices[0].delta.tool_calls or []]
        self.assertEqual([(t.function.name, t.function.arguments) for t in streamed],
                         [(call.function.name, call.function.arguments)])

    def test_refused_tool_requests(self):
        s = self.server
        chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        bad = [({"tool_choice": "required"}, "tool_choice"),
               ({"tools": WEATHER, "tool_choice": {"type": "function", "function": {"name": "get_time"}}}, "tool_choice"),
               ({"tools": WEATHER, "tool_choice": {"type": "function"}}, "tool_choice"),
               ({"tools": WEATHER, "tool_choice": "always"}, "tool_choice"),
               ({"tools": WEATHER, "tool_choice": "required", "response_format": {"type": "json_object"}}, None),
               ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
                   "type": "object", "properties": {"d": {"type": "string", "format": "uri"}}}}}], "tool_choice": "required"}, None),
               ({"tools": [{"type": "retrieval"}]}, "tools"),
               ({"tools": WEATHER + WEATHER}, "tools"),
               ({"tools": [{"type": "function", "function": {"name": "rm -rf"}}]}, "tools"),
               ({"tools": {"type": "function"}}, None),
               ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "not json"}}]}]}, "messages"),
               ({"messages": [{"role": "user", "content": "x", "tool_call_id": "c"}]}, "messages")]
        for extra, param in bad:
            got, err = s.raw("POST", "/v1/chat/completions", dict(chat, **extra))
            self.assertEqual(got, 400, (extra, err))
            self.assertNotIn("\n", err["error"]["message"])
            if param:
                self.assertEqual(err["error"]["param"], param, err)
        self.assertEqual(s.raw("GET", "/health")[0], 200)


class FunctionCallingWithoutATemplateForIt(unittest.TestCase):
    def test_tools_with_a_template_that_ignores_them_are_refused(self):
        with tempfile.TemporaryDirectory() as home:
            s = Server(home)
            try:
                got, err = s.raw("POST", "/v1/chat/completions", {
                    "messages": [{"role": "user", "content": "Weather in Oslo?"}], "tools": WEATHER, "max_tokens": 4})
                self.assertEqual(got, 400, err)
                self.assertIn("--chat-template", err["error"]["message"])
                # Without tools, the same server answers.
                r = s.client.chat.completions.create(model=s.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
                self.assertTrue(r.choices[0].message.content)
            finally:
                s.stop()


def vm_size(pid):
    """The address space process `pid` has mapped, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


class Memory(unittest.TestCase):
    """A prompt whose attention state the machine cannot hold is refused before the cache grows,
    with both sizes (400 `out_of_memory`), and the server answers the next request. The limit is real: the running
    server's address space is capped (`prlimit`, what `ulimit -v` does) at what it has mapped
    after a first request plus 64 MiB, while a 6,000-token prompt's K/V (and its reply's room)
    takes about 160 MB on the default model. glibc gives every thread an arena that reserves
    64 MiB of address space, which such a cap counts like memory in use: the server runs with
    one arena here (`MALLOC_ARENA_MAX=1`), so that the cap measures memory."""

    def test_a_prompt_too_large_for_memory_is_refused_and_the_server_lives_on(self):
        import resource
        with tempfile.TemporaryDirectory() as home:
            server = Server(home, env={"MALLOC_ARENA_MAX": "1"})
            try:
                ask = dict(model=server.model, prompt="The printing press", max_tokens=8, temperature=0)
                first = server.client.completions.create(**ask).choices[0].text
                limit = vm_size(server.proc.pid) + (64 << 20)
                resource.prlimit(server.proc.pid, resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
                status, err = server.raw("POST", "/v1/completions",
                                         {"model": server.model, "prompt": " word" * 6000, "max_tokens": 4})
                self.assertEqual(status, 400, err)
                self.assertEqual(err["error"]["code"], "out_of_memory")
                message = err["error"]["message"]
                self.assertRegex(message, r"^not enough memory for a prompt of 6\d\d\d tokens and its reply: "
                                          r"its attention state needs [\d.]+ MB more, and [\d.]+ MB is available$")
                # Nothing lost: the same greedy answer as before, under the same limit.
                again = server.client.completions.create(**ask).choices[0].text
                self.assertEqual(again, first)
                self.assertIsNone(server.proc.poll(), "the server is still running")
            finally:
                server.stop()


class BadInput(unittest.TestCase):
    """Each bad request gets a 4xx with an OpenAI-shaped error body, and the server stays up."""

    @classmethod
    def setUpClass(cls):
        cls.home = tempfile.TemporaryDirectory()
        cls.server = Server(cls.home.name, "--max-body-mb", "1", token="s3cret-token")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.home.cleanup()

    def expect(self, status, code, method, path, body=None, headers=None, data=None):
        auth = {"Authorization": "Bearer s3cret-token"}
        auth.update(headers or {})
        got, err = self.server.raw(method, path, body, auth, data)
        self.assertEqual(got, status, err)
        self.assertEqual(set(err["error"]), {"message", "type", "param", "code"})
        self.assertEqual(err["error"]["code"], code, err)
        self.assertNotIn("\n", err["error"]["message"])
        self.assertEqual(self.server.raw("GET", "/health", headers=auth)[0], 200, "the server stays up")
        return err["error"]

    def test_malformed_json(self):
        self.expect(400, "invalid_json", "POST", "/v1/chat/completions", data=b'{"messages": [')
        self.expect(400, "invalid_json", "POST", "/v1/chat/completions", data=b'{"messages": 5}')

    def test_fields_out_of_range_or_unsupported(self):
        chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        for extra, param in [({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
                             ({"top_logprobs": 2}, "top_logprobs"),
                             ({"logprobs": 3}, "logprobs"),
                             ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string"}}}},
                              "response_format"),
                             ({"response_format": {"type": "json_schema", "schema": {}}}, "response_format")]:
            e = self.expect(400, "invalid_request", "POST", "/v1/chat/completions", dict(chat, **extra))
            self.assertEqual(e["param"], param)
        text = {"prompt": "Hi", "max_tokens": 2}
        for extra, param in [({"logprobs": 21}, "logprobs"), ({"logprobs": True}, "logprobs"),
                             ({"logprobs": -1}, "logprobs"), ({"echo": True, "stream": True}, "echo"),
                             ({"echo": True, "state": "x"}, "echo"), ({"max_tokens": 0}, "max_tokens"),
                             ({"response_format": {"type": "xml"}}, "response_format")]:
            e = self.expect(400, "invalid_request", "POST", "/v1/completions", dict(text, **extra))
            self.assertEqual(e["param"], param)

    def test_unknown_model(self):
        with self.assertRaises(openai.NotFoundError):
            self.server.client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        self.expect(404, "model_not_found", "POST", "/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "hi"}]})

    def test_unknown_state_and_path_like_names(self):
        self.expect(404, "node_not_found", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "state": "no such node"})
        for name in ["../../etc/passwd", "/etc/passwd", "..\\x", "a\x00b"]:
            self.expect(400, "invalid_name", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "state": name})
        self.expect(400, "invalid_name", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "freeze": "a/b"})

    def test_a_state_of_another_model(self):
        db = sqlite3.connect(os.path.join(self.home.name, "library", "library.sqlite3"))
        db.execute("INSERT INTO models (fingerprint, display_name, path) VALUES ('0123456789abcdef', 'Other-Model', '/x')")
        db.execute("""INSERT INTO nodes (name, name_key, kind, model_fingerprint, token_count, transcript, created_at, updated_at)
                      VALUES ('foreign', 'foreign', 'chat', '0123456789abcdef', 0, '{"kind":"chat","messages":[]}', 1, 1)""")
        db.commit()
        db.close()
        err = self.expect(400, "state_model_mismatch", "POST", "/v1/chat/completions",
                          {"messages": [{"role": "user", "content": "hi"}], "state": "foreign"})
        self.assertIn("Other-Model", err["message"])

    def test_oversized_body(self):
        import http.client
        from urllib.parse import urlparse

        def post_big(chunked):
            # The server answers as soon as it knows the body is too big; the client sends only
            # the start of it, so it can read that answer without racing its own upload.
            u = urlparse(self.server.url)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            conn.putrequest("POST", "/v1/chat/completions")
            conn.putheader("Authorization", "Bearer s3cret-token")
            conn.putheader("Content-Type", "application/json")
            piece = b"x" * (256 << 10)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                try:
                    for _ in range(6):  # 1.5 MiB, over the 1 MiB limit
                        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                except (BrokenPipeError, ConnectionResetError):
                    pass
            else:
                conn.putheader("Content-Length", str(2 << 20))
                conn.endheaders()
                conn.send(piece)
            r = conn.getresponse()
            body = json.loads(r.read())
            conn.close()
            return r.status, body

        for chunked in (False, True):
            status, body = post_big(chunked)
            self.assertEqual((status, body["error"]["code"]), (413, "request_too_large"), body)
        self.assertEqual(self.server.raw("GET", "/health", headers={"Authorization": "Bearer s3cret-token"})[0], 200)

    def test_wrong_or_missing_token(self):
        for headers in [{"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}]:
            got, err = self.server.raw("GET", "/v1/models", headers=headers)
            self.assertEqual((got, err["error"]["code"]), (401, "invalid_api_key"))
        got, err = self.server.raw("GET", "/health")
        self.assertEqual(got, 401)
        bad = openai.OpenAI(base_url=self.server.url + "/v1", api_key="wrong", max_retries=0)
        with self.assertRaises(openai.AuthenticationError):
            bad.models.list()

    def test_max_tokens_past_the_context(self):
        self.expect(400, "context_length_exceeded", "POST", "/v1/chat/completions",
                    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10_000_000})
        self.expect(400, "invalid_request", "POST", "/v1/chat/completions",
                    {"messages": [{"role": "user", "content": "hi"}], "temperature": 7})
        self.expect(400, "invalid_request", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "n": 0})
        self.expect(404, "not_found", "GET", "/v1/nothing")

    def test_no_cors_headers_unless_an_origin_is_given(self):
        import http.client
        from urllib.parse import urlparse

        def preflight(server):
            u = urlparse(server.url)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            conn.request("OPTIONS", "/v1/chat/completions", headers={
                "Origin": "http://example.test", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type"})
            r = conn.getresponse()
            r.read()
            conn.close()
            return r.getheader("Access-Control-Allow-Origin")

        self.assertIsNone(preflight(self.server), "no CORS without --cors")
        with tempfile.TemporaryDirectory() as home:
            s = Server(home, "--cors", "http://example.test")
            try:
                self.assertEqual(preflight(s), "http://example.test")
            finally:
                s.stop()

    def test_non_loopback_without_token_is_refused(self):
        env = dict(os.environ, FREEZE_ATTN_MODELS=MODELS)
        env.pop("FREEZE_ATTN_TOKEN", None)
        r = subprocess.run([BIN, "serve", "--host", "0.0.0.0", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("without --token", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


class Disconnect(unittest.TestCase):
    def test_a_client_that_goes_away_cancels_its_generation(self):
        with tempfile.TemporaryDirectory() as home:
            s = Server(home)
            try:
                stream = s.client.completions.create(model=s.model, prompt="1, 2, 3, 4, 5, 6,", max_tokens=6000,
                                                     temperature=0, stream=True)
                for i, _ in enumerate(stream):
                    if i == 3:
                        break
                stream.close()
                t0 = time.monotonic()
                while s.raw("GET", "/health")[1]["busy"] and time.monotonic() - t0 < 30:
                    time.sleep(0.05)
                self.assertFalse(s.raw("GET", "/health")[1]["busy"], "the engine stops generating for a client that left")
                # A cancelled request leaves no cache node behind.
                self.assertEqual([n for n in s.raw("GET", "/v1/states?all=true")[1]["data"]], [])
                r = s.client.completions.create(model=s.model, prompt="Hello", max_tokens=4, temperature=0)
                self.assertTrue(r.choices[0].text)
            finally:
                s.stop()


class TwoProcesses(unittest.TestCase):
    """Two servers (the app serving its library is the same code on the same host type) and the
    CLI on one library at once: freezes, creates, forks, renames, exports and imports, deletes,
    cache eviction and gc interleave; nothing is lost and the library verifies."""

    def test_two_servers_and_the_cli_on_one_library_lose_nothing(self):
        with tempfile.TemporaryDirectory() as home:
            a = Server(home, "--cache-gb", "0.000001")
            b = Server(home, "--cache-gb", "0.000001")
            errors, made = [], []
            lock = threading.Lock()

            def guard(fn):
                def run():
                    try:
                        fn()
                    except Exception as e:  # noqa: BLE001 - every failure is counted
                        with lock:
                            errors.append(repr(e))
                return run

            def freezer(server, tag):
                for i in range(6):
                    name = f"{tag}-{i}"
                    msgs = [{"role": "user", "content": f"Tell me fact number {i} about {tag}."}]
                    extra = {"freeze": name}
                    if i > 0:
                        extra["state"] = f"{tag}-{i - 1}"
                    server.client.chat.completions.create(model=server.model, messages=msgs, max_tokens=6, temperature=0, extra_body=extra)
                    with lock:
                        made.append(name)

            def churn(server, tag):
                for i in range(8):
                    server.client.chat.completions.create(model=server.model, messages=[{"role": "user", "content": f"{tag} {i}"}], max_tokens=4)

            def tree_edits(server, importer):
                for i in range(4):
                    st, node = server.raw("POST", "/v1/states", {"name": f"doc-{i}", "text": f"Document {i}: the sky is blue."})
                    assert st == 201, node
                    st, child = server.raw("POST", f"/v1/states/doc-{i}/fork", {"name": f"fork-{i}"})
                    assert st == 201, child
                    st, _ = server.raw("PATCH", f"/v1/states/fork-{i}", {"name": f"renamed-{i}"})
                    assert st == 200
                    with lock:
                        made.extend([f"doc-{i}", f"renamed-{i}"])
                    st, bundle = server.raw("GET", f"/v1/states/doc-{i}/export")
                    assert st == 200
                    st, imported = importer.raw("POST", f"/v1/states/import?name=imported-{i}", data=bundle)
                    assert st == 201, imported
                    with lock:
                        made.append(f"imported-{i}")
                    st, temp = server.raw("POST", "/v1/states", {"name": f"temp-{i}", "text": "to be deleted"})
                    assert st == 201, temp
                    st, _ = server.raw("DELETE", f"/v1/states/temp-{i}")
                    assert st == 200

            def cli():
                env = dict(os.environ, FREEZE_ATTN_HOME=home, FREEZE_ATTN_MODELS=MODELS)
                for _ in range(4):
                    for cmd in (["states", "gc"], ["states", "list"]):
                        r = subprocess.run([BIN, *cmd], env=env, capture_output=True, text=True, timeout=120)
                        assert r.returncode == 0, r.stderr

            threads = [threading.Thread(target=guard(f)) for f in (
                lambda: freezer(a, "alpha"), lambda: freezer(b, "beta"), lambda: churn(a, "x"), lambda: churn(b, "y"),
                lambda: tree_edits(b, a), cli)]
            try:
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                self.assertEqual(errors, [])
                names = {n["name"] for n in a.raw("GET", "/v1/states")[1]["data"]}
                self.assertEqual(set(made) - names, set(), "every frozen node is there")
                self.assertFalse(any(n.startswith("temp-") for n in names))
                for name in made:
                    r = a.client.chat.completions.create(model=a.model, messages=[{"role": "user", "content": "ok?"}], max_tokens=2,
                                                         extra_body={"state": name})
                    self.assertGreaterEqual(r.usage.prompt_tokens_details.cached_tokens, 1, name)
            finally:
                a.stop()
                b.stop()
            env = dict(os.environ, FREEZE_ATTN_HOME=home, FREEZE_ATTN_MODELS=MODELS)
            r = subprocess.run([BIN, "states", "verify"], env=env, capture_output=True, text=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class Restart(unittest.TestCase):
    def test_reuse_survives_a_restart_with_the_same_greedy_text(self):
        with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as empty:
            a = Server(home)
            try:
                messages = conversation(a, 2)
            finally:
                a.stop()
            b = Server(home)
            try:
                r = b.client.chat.completions.create(model=b.model, messages=messages, max_tokens=24, temperature=0)
            finally:
                b.stop()
            c = Server(empty)
            try:
                plain = c.client.chat.completions.create(model=c.model, messages=messages, max_tokens=24, temperature=0)
            finally:
                c.stop()
            self.assertEqual(plain.usage.prompt_tokens_details.cached_tokens, 0)
            self.assertEqual(r.usage.prompt_tokens, plain.usage.prompt_tokens)
            self.assertGreater(r.usage.prompt_tokens_details.cached_tokens, plain.usage.prompt_tokens * 0.8,
                               "the new process resumes the conversation from the library")
            self.assertEqual(r.choices[0].message.content, plain.choices[0].message.content, "reuse must not change greedy output")


class Load(unittest.TestCase):
    CLIENTS, REQUESTS = 8, 20

    def test_concurrent_clients_are_all_answered(self):
        with tempfile.TemporaryDirectory() as home:
            s = Server(home)
            latencies, ttfts, errors = [], [], []
            lock = threading.Lock()

            def client(i):
                c = openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0, timeout=600)
                messages = [{"role": "system", "content": f"You are assistant number {i}."}]
                for j in range(self.REQUESTS):
                    messages.append({"role": "user", "content": f"Say the number {j}."})
                    t0 = time.perf_counter()
                    first = None
                    text = ""
                    try:
                        for ch in c.chat.completions.create(model=s.model, messages=messages, max_tokens=8, temperature=0, stream=True):
                            if ch.choices and ch.choices[0].delta.content:
                                first = first or time.perf_counter()
                                text += ch.choices[0].delta.content
                    except Exception as e:  # noqa: BLE001 - every failure is counted
                        with lock:
                            errors.append(repr(e))
                        continue
                    done = time.perf_counter()
                    messages.append({"role": "assistant", "content": text})
                    with lock:
                        latencies.append(done - t0)
                        ttfts.append((first or done) - t0)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(self.CLIENTS)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            s.stop()
            self.assertEqual(errors, [])
            self.assertEqual(len(latencies), self.CLIENTS * self.REQUESTS, "every request answered")
            q = lambda xs, p: statistics.quantiles(xs, n=100)[p - 1]
            print(f"\nload: {self.CLIENTS} clients x {self.REQUESTS} requests in {wall:.1f} s; "
                  f"latency p50 {q(latencies, 50) * 1000:.0f} ms p95 {q(latencies, 95) * 1000:.0f} ms; "
                  f"time to first token p50 {q(ttfts, 50) * 1000:.0f} ms p95 {q(ttfts, 95) * 1000:.0f} ms", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
