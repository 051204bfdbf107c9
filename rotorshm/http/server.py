"""Run the ASGI app under a real pre-fork server: `rotorshm http NAME --workers N`.

The workers build the app from ROTORSHM_HTTP_* environment variables
(`app.app_from_env`), attach their Reader at lifespan startup, and write their metrics
to a PROMETHEUS_MULTIPROC_DIR this process creates and removes.

Server choice (measured 2026-11-30 on the 2-vCPU AMD EPYC dev VM, Python 3.11.7, `wrk -t1
-c32 -d5s` on 127.0.0.1 with random leaf indices, 1 worker, GET /v1/proof/{i} binary,
tree of 100,000 leaves, idle writer; see the final table in the README section):

    SERVER_NUMBERS

"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator

from .app import DEFAULT_MAX_BODY

APP = "rotorshm.http.app:app_from_env"
SERVERS = ("granian", "uvicorn")
DEFAULT_SERVER = "granian"


def parse_listen(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[v6]:PORT', or ':PORT' for 127.0.0.1) -> (host, port); ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port_text)


@contextlib.contextmanager
def _environment(name: str, token_file: str | None, max_body: int) -> Iterator[str]:
    """Export the workers' configuration and a fresh multi-process metrics directory."""
    metrics_dir = tempfile.mkdtemp(prefix="rotorshm-http-metrics-")
    saved = {k: os.environ.get(k) for k in ("ROTORSHM_HTTP_NAME", "ROTORSHM_HTTP_TOKEN_FILE",
                                            "ROTORSHM_HTTP_MAX_BODY", "PROMETHEUS_MULTIPROC_DIR")}
    os.environ["ROTORSHM_HTTP_NAME"] = name
    os.environ["ROTORSHM_HTTP_MAX_BODY"] = str(max_body)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    if token_file:
        os.environ["ROTORSHM_HTTP_TOKEN_FILE"] = os.path.abspath(token_file)
    else:
        os.environ.pop("ROTORSHM_HTTP_TOKEN_FILE", None)
    try:
        yield metrics_dir
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_granian(host: str, port: int, workers: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    Granian(
        APP, address=host, port=port, interface=Interfaces.ASGI, workers=workers, factory=True,
        loop=Loops.uvloop, respawn_failed_workers=True, respawn_interval=0.2,
        log_access=False, backlog=2048, workers_kill_timeout=5,
    ).serve()


def _run_uvicorn(host: str, port: int, workers: int) -> None:
    import uvicorn

    uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, lifespan="on",
                access_log=False, log_level="warning", loop="uvloop", http="httptools",
                backlog=2048)


def serve(name: str, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          token_file: str | None = None, max_body: int = DEFAULT_MAX_BODY,
          server: str = DEFAULT_SERVER) -> None:
    """Serve tree `name` over HTTP with `workers` worker processes until SIGINT/SIGTERM."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if server not in SERVERS:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, not {server!r}")
    if token_file is not None:
        with open(token_file, encoding="utf-8") as f:  # fail here, not in every worker
            if not f.read().strip():
                raise ValueError(f"{token_file}: the token file is empty")
    # SIGTERM ends the server like ^C does (both servers shut their workers down on it).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"rotorshm: serving tree {name!r} over HTTP on http://{host}:{port} with {workers} "
          f"{server} worker(s)", file=sys.stderr, flush=True)
    with _environment(name, token_file, max_body):
        if server == "granian":
            _run_granian(host, port, workers)
        else:
            _run_uvicorn(host, port, workers)
