"""rotorshm over HTTP: proofs, tiles and inserts from pre-fork worker processes.

A network front end, a layer of its own: it imports the engine (`rotorshm.attach`,
`rotorshm.connect`) and nothing in the engine imports it. Install its dependencies with
``pip install 'rotorshm[http]'``.

- `create_app(name, token=...)` is the ASGI application. Each worker process attaches its
  `Reader` in the ASGI lifespan startup, i.e. after the server started (forked or spawned)
  it, never before.
- `serve(name, ...)` (``rotorshm http NAME --listen HOST:PORT --workers N``) runs it under
  granian with N worker processes; see `rotorshm/http/server.py` for why granian.

The endpoints are described by `/openapi.json` (`rotorshm/http/openapi.py`) and in the
module docstring of `rotorshm/http/app.py`.
"""

from __future__ import annotations

from .app import DEFAULT_MAX_BODY, WORKER_HEADER, ProofApp, create_app
from .server import serve

__all__ = ["DEFAULT_MAX_BODY", "WORKER_HEADER", "ProofApp", "create_app", "serve"]
