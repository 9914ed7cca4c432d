"""A local Label Studio server: install into its own venv, start on loopback, stop, status.

Label Studio pins many packages (Django, pyarrow<25, numpy<3), so it lives in a venv of its own
(`build/label-studio-venv`, or $SLUICE_LS_VENV) made by `sluice annotate server install`; nothing here
installs at run time. The admin user and its API token come from the environment only and reach the server
through its environment, never its command line (which `ps` shows) or a file of ours.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LS_VERSION = "1.23.2"
DEFAULT_VENV = Path("build/label-studio-venv")
TOKEN_ENV = "LABEL_STUDIO_API_KEY"
URL_ENV = "LABEL_STUDIO_URL"
USER_ENV = "LABEL_STUDIO_USERNAME"
PASSWORD_ENV = "LABEL_STUDIO_PASSWORD"
STATE_FILE = "sluice-server.json"

# Label Studio reads bare names (HOST, PORT, USERNAME, ...) as fallbacks for its LABEL_STUDIO_ ones, so a
# CI machine with USERNAME set would change its behaviour; these are removed from the server's environment.
_BARE_FALLBACKS = ("HOST", "PORT", "USERNAME", "PASSWORD", "USER_TOKEN", "DEBUG", "LOG_LEVEL")
# No telemetry, no update checks, no remote feature flags: the server must work offline and stay quiet.
_QUIET = {
    "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false", "LATEST_VERSION_CHECK": "false",
    "FEATURE_FLAGS_OFFLINE": "true", "CONVERTER_DOWNLOAD_RESOURCES": "false", "DISABLE_SIGNUP_WITHOUT_LINK": "true",
}


class ServerError(RuntimeError):
    """The server could not be installed, started or reached; the message says what to do."""


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    url: str
    data_dir: str
    files_root: str
    host: str
    port: int


def venv_path() -> Path:
    return Path(os.environ.get("SLUICE_LS_VENV", DEFAULT_VENV)).absolute()


def install(venv: Path | None = None) -> Path:
    """Create the server venv and install label-studio into it (the one command that installs it)."""
    venv = venv or venv_path()
    exe = venv / "bin" / "label-studio"
    if exe.exists():
        log.info("label-studio already installed in %s", venv)
        return exe
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"label-studio=={LS_VERSION}"], check=True)
    return exe


def _executable(venv: Path | None) -> Path:
    exe = (venv or venv_path()) / "bin" / "label-studio"
    if not exe.exists():
        raise ServerError(f"Label Studio is not installed at {exe.parent.parent}. Install it with "
                          f"`sluice annotate server install` (or set SLUICE_LS_VENV to an existing venv).")
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_busy(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host if host != "0.0.0.0" else "127.0.0.1", port)) == 0


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def admin_env() -> dict[str, str]:
    """The admin user and token the server is started with, from the environment, or a clear error."""
    missing = [n for n in (USER_ENV, PASSWORD_ENV, TOKEN_ENV) if not os.environ.get(n)]
    if missing:
        raise ServerError(f"set {', '.join(missing)} in the environment: the admin user (an e-mail), its password "
                          f"and its API token (up to 40 characters, e.g. `python -c 'import secrets; "
                          f"print(secrets.token_hex(20))'`) are never read from files or flags.")
    token = os.environ[TOKEN_ENV]
    if len(token) > 40:
        raise ServerError(f"{TOKEN_ENV} is {len(token)} characters; Label Studio's legacy tokens hold at most 40.")
    return {"LABEL_STUDIO_USERNAME": os.environ[USER_ENV], "LABEL_STUDIO_PASSWORD": os.environ[PASSWORD_ENV],
            "LABEL_STUDIO_USER_TOKEN": token}


def _server_env(data_dir: Path, files_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _BARE_FALLBACKS}
    env.update(_QUIET)
    env.update(admin_env())
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files_root),
        # The fixed admin token only works if legacy tokens are on when the organisation is first created.
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
    })
    return env


def start(data_dir: Path, port: int = 8080, host: str = "127.0.0.1", files_root: Path | None = None,
          venv: Path | None = None, timeout: float = 240.0) -> ServerInfo:
    """Start Label Studio in the background and wait until /health answers (first start ~40 s: migrations)."""
    exe = _executable(venv)
    data_dir = Path(data_dir).absolute()
    files_root = Path(files_root or data_dir / "files").absolute()
    env = _server_env(data_dir, files_root)  # fails before anything is created when the admin env is missing
    running = status(data_dir)
    if running is not None:
        raise ServerError(f"a server for {data_dir} already runs at {running.url} (pid {running.pid}); "
                          f"stop it with `sluice annotate server stop --data-dir {data_dir}`.")
    # Label Studio silently moves to the next port when one is busy, so a busy port is refused up front.
    if _port_busy(host, port):
        raise ServerError(f"port {port} is in use; pass another with --port.")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("Label Studio will listen on %s, not only on loopback, as asked", host)
    data_dir.mkdir(parents=True, exist_ok=True)
    files_root.mkdir(parents=True, exist_ok=True)
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    cmd = [str(exe), "start", "--no-browser", "--internal-host", host, "--port", str(port), "--host", url,
           "--data-dir", str(data_dir)]
    with open(data_dir / "server.log", "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    info = ServerInfo(pid=proc.pid, url=url, data_dir=str(data_dir), files_root=str(files_root), host=host, port=port)
    (data_dir / STATE_FILE).write_text(json.dumps(asdict(info), indent=2))
    _wait_healthy(proc, info, timeout)
    return info


def _wait_healthy(proc: subprocess.Popen, info: ServerInfo, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            (Path(info.data_dir) / STATE_FILE).unlink(missing_ok=True)
            raise ServerError(f"Label Studio exited with code {proc.returncode} while starting; "
                              f"see {info.data_dir}/server.log:\n{log_tail(Path(info.data_dir))}")
        if healthy(info.url):
            return
        time.sleep(0.5)
    _terminate(info.pid)
    (Path(info.data_dir) / STATE_FILE).unlink(missing_ok=True)
    raise ServerError(f"Label Studio did not answer {info.url}/health within {timeout:.0f} s; "
                      f"see {info.data_dir}/server.log")


def log_tail(data_dir: Path, lines: int = 15) -> str:
    path = Path(data_dir) / "server.log"
    if not path.exists():
        return ""
    text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    token = os.environ.get(TOKEN_ENV)
    return text.replace(token, "***") if token else text


def _is_label_studio(pid: int) -> bool:
    """Guards against a reused pid: only a process whose command line is label-studio is ever signalled."""
    try:
        return b"label-studio" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def status(data_dir: Path) -> ServerInfo | None:
    """The running server of `data_dir`, or None (a stale state file is removed)."""
    state = Path(data_dir) / STATE_FILE
    if not state.exists():
        return None
    info = ServerInfo(**json.loads(state.read_text()))
    if not _is_label_studio(info.pid):
        state.unlink(missing_ok=True)
        return None
    return info


def _terminate(pid: int, grace: float = 20.0) -> None:
    if not _is_label_studio(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _is_label_studio(pid):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    if _is_label_studio(pid):
        os.kill(pid, signal.SIGKILL)


def stop(data_dir: Path) -> bool:
    """Stop the server of `data_dir` by its pid; False when none was running."""
    info = status(data_dir)
    if info is None:
        return False
    _terminate(info.pid)
    (Path(data_dir) / STATE_FILE).unlink(missing_ok=True)
    return True
