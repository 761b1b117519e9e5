"""Serving: an HTTP ranking service with live room state in a store (``fluidrec serve``).

- ``serve(ServeConfig(...))`` / ``create_app``: FastAPI on uvicorn (``fluidrec.serve.app``).
- ``Service``: ingest a slice (encode, quantize, fold into the room's causal vote), rank
  candidate rooms with the compiled scorer, read room state, record clicks.
- ``Store`` / ``open_store``: one interface, ``SQLiteStore`` (WAL, one file, the default)
  and ``RedisStore`` (several workers or machines); ``verify_store`` replays every room.
- ``ServerProcess`` / ``RedisProcess``: the service and a Redis server as real processes
  (tests, benchmarks).

Example:
    >>> from fluidrec.serve import ServeConfig, serve
    >>> serve(ServeConfig(run="runs/demo", state="sqlite:///runs/demo/serve/state.sqlite"))
"""

from fluidrec.utils.lazy import lazy_exports

_EXPORTS = {
    "create_app": "app",
    "serve": "app",
    "ServeConfig": "config",
    "Artifacts": "model",
    "ServingModel": "model",
    "RedisProcess": "process",
    "ServerProcess": "process",
    "InputError": "service",
    "Service": "service",
    "ServiceConfig": "service",
    "NewSlice": "store",
    "Store": "store",
    "open_store": "backends",
    "verify_store": "store",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
