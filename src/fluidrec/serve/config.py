"""``ServeConfig``: everything ``fluidrec serve`` is started with, validated when built.

Example:
    >>> cfg = ServeConfig(run=Path("runs/demo"), state="sqlite:///runs/demo/serve/state.sqlite", port=8080)
    >>> cfg.state_kind
    'sqlite'
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path
from typing import Any

from fluidrec.errors import check
from fluidrec.serve.service import ServiceConfig

DEFAULT_STATE = "serve/state.sqlite"  # under the run directory
COMPILE_MODES = ("background", "wait", "off")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """How to start the service.

    Args:
        run: a main-job run directory or a ranker directory (``fluidrec.serve.model.Artifacts``).
        state: ``sqlite:///PATH`` or ``redis://HOST:PORT[/DB]`` (default: ``<run>/serve/state.sqlite``).
        arm: the ranker of a main-job run (``rankers/<arm>``).
        host, port: where to listen; loopback unless told otherwise.
        workers: processes (each loads and compiles the model; they share the store).
        token_file: a file holding the bearer token that write endpoints require (None: no token).
        encoder, code_model: override the run's encoder / code model directories.
        compile: ``background`` (serve eagerly at once, swap the compiled scorer in when it is
            built: tens of seconds), ``wait`` (listen only once compiled) or ``off`` (eager
            only: same scores, slower; quick tests).
        threads: threads of the compiled scorer's backbone kernel per worker (other torch ops use one).
            1 by default: measured on the shared 2-core machine, a second kernel thread made the
            load test's p99 worse (it waits for the slower of two threads), and a second worker
            (``workers=2``) is the better use of the second core.
        max_body_bytes: larger request bodies get a 413.
        max_queue: requests waiting for one worker's scorer (or writer) beyond which it answers 503.
        service: limits and defaults of the operations.
    """

    run: Path
    state: str | None = None
    arm: str = "fluid"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    token_file: Path | None = None
    encoder: Path | None = None
    code_model: Path | None = None
    compile: str = "background"
    threads: int = 1
    max_body_bytes: int = 1 << 20
    max_queue: int = 64
    service: ServiceConfig = dataclasses.field(default_factory=ServiceConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run", Path(self.run))
        if self.state is None:
            object.__setattr__(self, "state", f"sqlite:///{self.run / DEFAULT_STATE}")
        check(self.state_kind in ("sqlite", "redis"), f"--state must be sqlite:///PATH or redis://HOST:PORT, got {self.state!r}")
        check(self.compile in COMPILE_MODES, f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")
        check(1 <= self.port <= 65535, f"port must be in [1, 65535], got {self.port}")
        check(1 <= self.workers <= 64, f"workers must be in [1, 64], got {self.workers}")
        check(1 <= self.threads <= 64, f"threads must be in [1, 64], got {self.threads}")
        check(self.max_body_bytes >= 1024, f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        check(self.max_queue >= 1, f"max_queue must be >= 1, got {self.max_queue}")
        check(bool(self.host.strip()), "host must not be empty")

    @property
    def state_kind(self) -> str:
        return self.state.split(":", 1)[0] if self.state and ":" in self.state else ""

    @property
    def loopback(self) -> bool:
        """Whether ``host`` is a loopback address (the default) rather than one reachable from other machines."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def read_token(self) -> str | None:
        """The bearer token from ``token_file`` (stripped), or None; an empty or unreadable file is a usage error."""
        from fluidrec.errors import UsageError

        if self.token_file is None:
            return None
        try:
            token = Path(self.token_file).read_text().strip()
        except OSError as exc:
            raise UsageError(f"--token-file {self.token_file}: {exc.strerror}") from None
        if not token:
            raise UsageError(f"--token-file {self.token_file} is empty")
        return token

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        return json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()})

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        d: dict[str, Any] = json.loads(text)
        d["service"] = ServiceConfig(**d["service"])
        for k in ("run", "token_file", "encoder", "code_model"):
            d[k] = Path(d[k]) if d.get(k) else None
        return cls(**d)
