"""Fixtures of the serving tests: a tiny run directory, a private redis-server, both stores.

The run is built once per session from the shared ``tiny_world`` (``fluidrec.serve.tiny``,
~20 s). Redis tests start a real ``redis-server`` (AOF on, fsync always) on a free loopback
port and skip, saying why, where no binary is installed (``apt-get install redis-server``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluidrec.serve.process import RedisProcess, redis_server_binary

NO_REDIS = "no redis-server binary on this machine (apt-get install redis-server); the Redis store tests need a real server"


@pytest.fixture(scope="session")
def serve_run(tmp_path_factory, tiny_world) -> Path:
    """A run directory in the main job's layout (world, encoder, codes/model, rankers/fluid)."""
    from fluidrec.serve.tiny import build_tiny_run

    return build_tiny_run(tmp_path_factory.mktemp("serve_run") / "run", world=tiny_world, max_train_rows=8000).root


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    if redis_server_binary() is None:
        pytest.skip(NO_REDIS)
    server = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    """The private server's URL, its database emptied for this test."""
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    return redis_server.url


@pytest.fixture(params=["sqlite", "redis"])
def state_url(request, tmp_path) -> str:
    """A fresh store of each kind: the same tests run on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    return request.getfixturevalue("redis_url")


@pytest.fixture(scope="session")
def serving_model(serve_run):
    """The tiny run's parts loaded for in-process tests (eager scorer: no compilation)."""
    from fluidrec.serve.model import Artifacts, ServingModel

    return ServingModel.load(Artifacts.resolve(serve_run), compile=False)
