"""A real HTTP server on loopback that speaks the OpenAI chat-completions API. A TEST TOOL, not a captioner.

It answers `POST /v1/chat/completions` with a fixed, checkable caption in the prompt's language (and,
for text-in-image prompts, the OCR lines quoted), after `latency_s`. Misbehaviour is chosen per request
body by a hash, so the same request always meets the same fate and a test knows what to expect:
`fail_rate` answers 503 every time, `flaky_rate` answers 503 the first `flaky_times` times and then
succeeds (retries recover), `malformed_rate` answers 200 with a body that is not a chat completion,
`slow_rate` sleeps `slow_s` (past the client's timeout).

    python -m tools.fake_openai_server --port 8000 --latency 0.05
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EN = ("A colourful flat picture of round shapes in red and blue over a plain background, lit evenly, "
      "with soft edges and a calm, simple composition.")
ZH = "一幅色彩鲜明的平面图画，红色和蓝色的圆形散布在简洁的背景上，光线均匀，边缘柔和，构图平静而简单。"


@dataclass
class Behaviour:
    latency_s: float = 0.0
    fail_rate: float = 0.0
    flaky_rate: float = 0.0
    flaky_times: int = 1
    malformed_rate: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 5.0
    boilerplate: bool = False  # start answers with "The image shows" / "这张图片展示了"
    last_headers: dict = field(default_factory=dict)
    counts: dict = field(default_factory=lambda: {"requests": 0, "ok": 0, "failed": 0, "malformed": 0, "slow": 0,
                                                  "in_flight": 0, "max_in_flight": 0})
    _seen: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fate(self, body: bytes) -> str:
        """ok, fail, flaky (fails while seen < flaky_times), malformed or slow: fixed per body."""
        h = int.from_bytes(hashlib.sha256(body).digest()[:8], "big") / 2**64
        for name, rate in (("fail", self.fail_rate), ("flaky", self.flaky_rate),
                           ("malformed", self.malformed_rate), ("slow", self.slow_rate)):
            if h < rate:
                return name
            h -= rate
        return "ok"


def answer(prompt: str, boilerplate: bool = False) -> str:
    """The caption for `prompt`: Chinese for a Chinese prompt; OCR lines quoted for text-in-image."""
    zh = len(re.findall(r"[\u4e00-\u9fff]", prompt)) > len(prompt) / 4
    lines = prompt.splitlines()
    quoted = [ln.strip() for ln in lines[1:-1] if ln.strip()] if len(lines) >= 3 else []
    if zh:
        text = ZH + "".join(f"画面上方写着“{q}”。" for q in quoted)
        return ("这张图片展示了" + text) if boilerplate else text
    text = EN + "".join(f' At the top, white letters read "{q}".' for q in quoted)
    return ("The image shows " + text[0].lower() + text[1:]) if boilerplate else text


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    # Headers and body in one segment, sent at once: otherwise Nagle + delayed ACK add ~40 ms per answer.
    disable_nagle_algorithm = True
    wbufsize = -1
    behaviour: Behaviour

    def log_message(self, *args):  # quiet: tests and benches read counts, not logs
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        b = self.behaviour
        with b._lock:
            b.counts["in_flight"] += 1
            b.counts["max_in_flight"] = max(b.counts["max_in_flight"], b.counts["in_flight"])
        try:
            self._post()
        finally:
            with b._lock:
                b.counts["in_flight"] -= 1

    def _post(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        b = self.behaviour
        self.behaviour.last_headers = dict(self.headers)
        with b._lock:
            b.counts["requests"] += 1
            fate = b.fate(body)
            if fate == "flaky":
                seen = b._seen[body] = b._seen.get(body, 0) + 1
                fate = "fail" if seen <= b.flaky_times else "ok"
        time.sleep(b.latency_s)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(404, b'{"error": "not found"}')
        if fate == "slow":
            b.counts["slow"] += 1
            time.sleep(b.slow_s)
        if fate == "fail":
            b.counts["failed"] += 1
            return self._send(503, b'{"error": {"message": "overloaded"}}')
        if fate == "malformed":
            b.counts["malformed"] += 1
            return self._send(200, b'{"choices": [{"message": {"role": "assistant"}}]', "application/json")
        try:
            req = json.loads(body)
            prompt = next(p["text"] for p in req["messages"][-1]["content"] if p.get("type") == "text")
        except (ValueError, KeyError, StopIteration, TypeError) as e:
            return self._send(400, json.dumps({"error": f"bad request: {e}"}).encode())
        b.counts["ok"] += 1
        out = {"id": "fake", "object": "chat.completion", "model": req.get("model"),
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": answer(prompt, b.boilerplate)}}]}
        self._send(200, json.dumps(out, ensure_ascii=False).encode("utf-8"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the bench opens 64 connections at once; the default backlog is 5

    def handle_error(self, request, client_address):
        # A client that timed out closed its socket before a slow answer: expected here, not news.
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FakeOpenAIServer:
    """`with FakeOpenAIServer(latency_s=0.05) as srv: srv.url` -> http://127.0.0.1:<port>/v1"""

    def __init__(self, port: int = 0, **behaviour):
        self.behaviour = Behaviour(**behaviour)
        handler = type("Handler", (_Handler,), {"behaviour": self.behaviour})
        self.httpd = _Server(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--fail-rate", type=float, default=0.0)
    ap.add_argument("--malformed-rate", type=float, default=0.0)
    a = ap.parse_args()
    with FakeOpenAIServer(a.port, latency_s=a.latency, fail_rate=a.fail_rate, malformed_rate=a.malformed_rate) as s:
        print(f"fake OpenAI server on {s.url} (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
