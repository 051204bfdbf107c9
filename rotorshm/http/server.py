"""Run the ASGI app under a real pre-fork server: `rotorshm http NAME --workers N`.

The workers build the app from ROTORSHM_HTTP_* environment variables
(`app.app_from_env`), attach their Reader at lifespan startup, and write their metrics
to a PROMETHEUS_MULTIPROC_DIR this process creates and removes.

Server choice, measured 2026-11-30 on the 2-vCPU AMD EPYC dev VM (Python 3.11.7) while other
sessions kept its load average at 5-8, so read the ratios, not the absolute numbers: `wrk -t1
-c16 -d6s` on 127.0.0.1, GET /v1/proof/{random index} of a 100,000-leaf tree, one worker,
two rounds each; "CPU" is the server's processes' CPU time over the run (/proc/PID/stat):

    server                        binary req/s   binary req/CPU-s   JSON req/s
    granian 2.8 (ASGI, uvloop)    2,308 / 1,499    4,995 / 3,891    1,202 / 856
    uvicorn 0.54 (httptools,      1,534 / 1,218    4,123 / 4,251    1,108 / 780
      uvloop)

The same with a 5-byte "hello" ASGI app (no rotorshm; 4 runs each, load average 12-18):
granian 2,537-4,131 req/s at 82-97 µs CPU per request, uvicorn 1,774-2,571 req/s at 86-113
µs. On that machine about 85 µs of a proof request's CPU is the server itself.

granian served 1.1-1.5x the requests of uvicorn for about the same CPU per request (its
HTTP parsing and socket I/O run in Rust threads, outside the worker's GIL), and its
supervisor respawns a killed worker whatever the worker count (uvicorn with --workers 1
runs the app in the main process, with no supervisor). gunicorn with uvicorn workers was
not measured: it runs the same uvicorn worker per process under gunicorn's arbiter.
`--server uvicorn` (hidden option; needs uvicorn[standard]) is kept to repeat the comparison.

On the framework: in process, per request, a bare ASGI callable cost 58-76 µs of CPU and
the same handler behind Starlette's router and Response 85-97 µs (the proof itself 41-45
µs, on the same loaded machine): Starlette would add ~30-50 % to the request's cost.
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
def _environment(name: str, token_file: str | None, max_body: int,
                 tlog: dict[str, str] | None = None) -> Iterator[str]:
    """Export the workers' configuration and a fresh multi-process metrics directory."""
    metrics_dir = tempfile.mkdtemp(prefix="rotorshm-http-metrics-")
    tlog = tlog or {}
    saved = {k: os.environ.get(k) for k in ("ROTORSHM_HTTP_NAME", "ROTORSHM_HTTP_TOKEN_FILE",
                                            "ROTORSHM_HTTP_MAX_BODY", "PROMETHEUS_MULTIPROC_DIR",
                                            *tlog)}
    os.environ.update(tlog)
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
    try:
        from granian import Granian
        from granian.constants import Interfaces, Loops
    except ImportError:
        raise ValueError("rotorshm http needs the http extra: pip install 'rotorshm[http]'"
                         ) from None

    Granian(
        APP, address=host, port=port, interface=Interfaces.ASGI, workers=workers, factory=True,
        loop=Loops.uvloop, respawn_failed_workers=True, respawn_interval=0.2,
        log_access=False, backlog=2048, workers_kill_timeout=5,
    ).serve()


def _run_uvicorn(host: str, port: int, workers: int) -> None:
    try:
        import uvicorn
    except ImportError:
        raise ValueError("--server uvicorn needs uvicorn[standard] installed") from None

    uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, lifespan="on",
                access_log=False, log_level="warning", loop="uvloop", http="httptools",
                backlog=2048)


def serve(name: str, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          token_file: str | None = None, max_body: int = DEFAULT_MAX_BODY,
          server: str = DEFAULT_SERVER, key_file: str | None = None,
          checkpoint_interval: float = 1.0) -> None:
    """Serve tree `name` over HTTP with `workers` worker processes until SIGINT/SIGTERM.

    `key_file` (a `rotorshm keygen` signer key) enables the signed GET /checkpoint,
    re-signed at most every `checkpoint_interval` seconds (rotorshm/http/tlog.py).
    """
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
    tlog: dict[str, str] = {}
    if key_file is not None:  # the signed checkpoint of the tlog routes (issue 12)
        from ..note import Signer
        from .tlog import INTERVAL_ENV, KEY_ENV

        with open(key_file, encoding="utf-8") as f:  # fail here, not in every worker
            Signer.from_text(f.read())
        tlog = {KEY_ENV: os.path.abspath(key_file), INTERVAL_ENV: str(checkpoint_interval)}
    with _environment(name, token_file, max_body, tlog):
        if server == "granian":
            _run_granian(host, port, workers)
        else:
            _run_uvicorn(host, port, workers)
