"""A served VLM behind an OpenAI-compatible chat endpoint (vLLM, SGLang, any `/v1/chat/completions`).

Requests of a batch run concurrently up to `concurrency`, each with a timeout; timeouts, connection
errors, 429 and 5xx are retried with exponential backoff. A request that still fails, or whose answer
is not a chat completion, becomes an error row saying why; the other rows of the batch are unaffected.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
import random

from curation.captioners.base import MODEL_STYLES, CaptionerBase, Request
from schemas.captions import CAPTION_LANGS
from plumbing.deps import require

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class RequestFailed(Exception):
    """A request that will not be retried (or ran out of retries); the message is the error row."""


class ServedCaptioner(CaptionerBase):
    name = "served_openai"

    def __init__(self, url: str, model: str, styles=MODEL_STYLES, langs=CAPTION_LANGS, concurrency: int = 8,
                 timeout_s: float = 60.0, retries: int = 3, backoff_s: float = 0.5, max_tokens: int = 512,
                 temperature: float = 0.2, image_max_side: int = 768, api_key_env: str | None = "OPENAI_API_KEY",
                 prompt_versions: dict[str, int] | None = None):
        super().__init__(model, styles, langs, image_max_side, prompt_versions)
        if concurrency < 1 or retries < 0 or timeout_s <= 0:
            raise ValueError("served captioner needs concurrency >= 1, retries >= 0 and timeout_s > 0")
        self.url = endpoint(url)
        self.concurrency, self.timeout_s, self.retries, self.backoff_s = concurrency, timeout_s, retries, backoff_s
        self.max_tokens, self.temperature, self.api_key_env = max_tokens, temperature, api_key_env

    def load(self) -> None:
        require("httpx", extra="caption")

    def _run(self, images: dict, reqs: list[Request]) -> list[tuple[str | None, str | None]]:
        urls = {i: data_url(im) for i, im in images.items()}
        return asyncio.run(self._all(urls, reqs))

    async def _all(self, urls: dict[str, str], reqs: list[Request]):
        """`concurrency` workers, each with its own one-connection client, take requests from a queue.

        One shared pool of N connections costs O(N) Python work per request in httpcore (measured: 5x
        the client CPU per request at 64 connections than at 16); N single-connection clients do not.
        """
        import httpx

        key = os.environ.get(self.api_key_env) if self.api_key_env else None  # secrets from the environment
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        results: list = [None] * len(reqs)
        queue: asyncio.Queue = asyncio.Queue()
        for item in enumerate(reqs):
            queue.put_nowait(item)

        async def worker():
            # TCP_NODELAY: headers and body may go out as two segments; Nagle would hold the second.
            transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1),
                                                 socket_options=[(6, 1, 1)])  # IPPROTO_TCP, TCP_NODELAY
            async with httpx.AsyncClient(timeout=self.timeout_s, transport=transport, headers=headers) as client:
                while not queue.empty():
                    n, r = queue.get_nowait()
                    results[n] = await self._with_retries(client, self.body(r, urls[r.id]))

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(reqs)))))
        return results

    def body(self, r: Request, image_url: str) -> dict:
        content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": r.prompt}]
        return {"model": self.model, "messages": [{"role": "user", "content": content}],
                "max_tokens": self.max_tokens, "temperature": self.temperature}

    async def _with_retries(self, client, body: dict) -> tuple[str | None, str | None]:
        import httpx

        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                # Full jitter: concurrent retries after a server hiccup must not arrive together.
                await asyncio.sleep(random.uniform(0, self.backoff_s * 2 ** (attempt - 1)))
            try:
                resp = await client.post(self.url, json=body)
            except httpx.TimeoutException:
                last = f"timed out after {self.timeout_s:g} s"
                continue
            except httpx.TransportError as e:
                last = f"connection failed: {type(e).__name__}: {e}"
                continue
            if resp.status_code in _RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            try:
                return parse_completion(resp), None
            except RequestFailed as e:
                return None, str(e)
        return None, f"request to {self.url} failed after {self.retries + 1} attempts; last: {last}"


def endpoint(url: str) -> str:
    """The chat-completions URL from a base (`http://host:8000` or `.../v1`) or the full path."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


def parse_completion(resp) -> str:
    """The text of a chat completion; RequestFailed says what was wrong with anything else."""
    if resp.status_code != 200:
        raise RequestFailed(f"HTTP {resp.status_code} (not retried): {resp.text[:200]}")
    try:
        content = resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise RequestFailed(f"malformed response ({type(e).__name__}: {e}): {resp.text[:200]!r}") from None
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise RequestFailed(f"malformed response: message content is {type(content).__name__}, not text")
    return content


def data_url(image, quality: int = 90) -> str:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
