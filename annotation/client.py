"""Label Studio over its API (label-studio-sdk), with errors that say what to do.

Works the same against the server `sluice annotate server start` runs and against an existing one: the URL
is given (or $LABEL_STUDIO_URL) and the token is read from $LABEL_STUDIO_API_KEY only. The token is never
put in a message: every error text passes through `redact`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

from annotation.server import TOKEN_ENV, URL_ENV


class LabelStudioUnavailable(RuntimeError):
    """The server did not answer; nothing was lost, and rerunning the same command resumes."""


class LabelStudioError(RuntimeError):
    """The server answered with an error (bad token, bad request)."""


def redact(text: str) -> str:
    token = os.environ.get(TOKEN_ENV)
    return text.replace(token, "***") if token else text


def token_from_env() -> str:
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise LabelStudioError(f"set {TOKEN_ENV} to a Label Studio API token (legacy token or personal access "
                               f"token); it is only ever read from the environment.")
    return token


@contextlib.contextmanager
def api_errors(url: str, doing: str) -> Iterator[None]:
    """Translate transport and HTTP errors into the two errors above, with the token removed."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        yield
    except (httpx.TransportError, ConnectionError) as e:
        raise LabelStudioUnavailable(
            f"Label Studio at {url} did not answer while {doing} ({type(e).__name__}). Start it "
            f"(`sluice annotate server start`) or fix --url/{URL_ENV}, then rerun: the round resumes where it "
            f"stopped and labels already in Label Studio are kept.") from None
    except ApiError as e:
        body = redact(str(e.body))[:500]
        hint = f" Check {TOKEN_ENV}." if e.status_code in (401, 403) else ""
        raise LabelStudioError(f"Label Studio refused {doing}: HTTP {e.status_code}: {body}.{hint}") from None


@dataclass
class Client:
    url: str
    sdk: Any  # label_studio_sdk.LabelStudio

    def call(self, doing: str, fn, *args, **kwargs):
        with api_errors(self.url, doing):
            return fn(*args, **kwargs)

    def find_project(self, title: str) -> int | None:
        """The id of the project titled exactly `title`, or None."""
        found = self.call("listing projects",
                          lambda: [p.id for p in self.sdk.projects.list(title=title) if p.title == title])
        return found[0] if found else None

    def label_config(self, project: int) -> str:
        return self.call("reading a project", lambda: self.sdk.projects.get(id=project).label_config or "")

    def project(self, title: str, label_config: str, description: str = "") -> int:
        """The id of the project titled `title`, created with `label_config` when there is none."""
        found = self.find_project(title)
        if found is not None:
            return found
        p = self.call("creating a project", self.sdk.projects.create, title=title, label_config=label_config,
                      description=description)
        return p.id

    def local_storage(self, project: int, path: str) -> None:
        """A Local Files import storage on `path` (needed before /data/local-files URLs are served)."""
        existing = self.call("listing storages", self.sdk.import_storage.local.list, project=project)
        if any(getattr(s, "path", None) == path for s in existing):
            return
        self.call("adding local-files storage", self.sdk.import_storage.local.create, project=project, path=path,
                  use_blob_urls=True, regex_filter=r".*\.(jpg|jpeg|png|webp)", title="sluice")

    def tasks(self, project: int) -> list[dict]:
        """All tasks of `project` with their annotations, as plain dicts."""
        def fetch():
            return [t.model_dump() if hasattr(t, "model_dump") else dict(t)
                    for t in self.sdk.tasks.list(project=project, fields="all")]
        return self.call("listing tasks", fetch)

    def import_tasks(self, project: int, tasks: list[dict]) -> list[int]:
        if not tasks:
            return []
        r = self.call("importing tasks", self.sdk.projects.import_tasks, id=project, request=tasks,
                      return_task_ids=True)
        return list(r.task_ids or [])

    def users(self) -> dict[int, str]:
        return self.call("listing users", lambda: {u.id: u.email or u.username for u in self.sdk.users.list()})


def connect(url: str | None = None, timeout: float = 30.0) -> Client:
    """A client for the server at `url` (or $LABEL_STUDIO_URL), checked with whoami()."""
    from plumbing.deps import require

    url = (url or os.environ.get(URL_ENV) or "").rstrip("/")
    if not url:
        raise LabelStudioError(f"no Label Studio URL: pass --url or set {URL_ENV} (e.g. http://127.0.0.1:8080).")
    sdk_mod = require("label_studio_sdk", "annotate")
    # The SDK reads LABEL_STUDIO_API_KEY when it is imported, so the key is always passed explicitly.
    sdk = sdk_mod.LabelStudio(base_url=url, api_key=token_from_env(), timeout=timeout)
    client = Client(url=url, sdk=sdk)
    client.call("checking the token", sdk.users.whoami)
    return client
