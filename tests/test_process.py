"""Process-wide policies (notifier/process.py): `serve` applies them to the processes it
runs; an app built in process (as tests build them) leaves the interpreter alone."""

from __future__ import annotations

import functools
import gc
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier import gcpolicy, process
from notifier.app import create_app
from notifier.config import Settings
from notifier.logs import JsonFormatter
from tests.support import API_KEY, SECRET

LOGGERS = ("", "alembic", "uvicorn", "uvicorn.error", "uvicorn.access")


def settings(folder: Path) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{folder / 'process.db'}",
        jwt_secret=SECRET,
        api_keys=[f"main:{API_KEY}"],
    )


def logging_state() -> list[tuple[object, ...]]:
    state: list[tuple[object, ...]] = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        state.append((logger.handlers[:], logger.filters[:], logger.level, logger.propagate))
    return state


@pytest.fixture
def restored() -> Iterator[None]:
    """Whatever the test does to gc and logging is undone after it."""
    threshold = gc.get_threshold()
    saved = logging_state()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        for name, (handlers, filters, level, propagate) in zip(LOGGERS, saved, strict=True):
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers  # type: ignore[index]
            logger.filters[:] = filters  # type: ignore[index]
            logger.setLevel(level)  # type: ignore[arg-type]
            logger.propagate = propagate  # type: ignore[assignment]


async def test_an_in_process_app_leaves_gc_and_logging_alone(
    tmp_path: Path, restored: None
) -> None:
    """From start-up to shutdown, create_app's lifespan changes neither the collector's
    thresholds, nor its frozen objects, nor any logger."""
    before = (gc.get_threshold(), gc.get_freeze_count(), logging_state())
    app = create_app(settings(tmp_path))
    async with app.router.lifespan_context(app):
        assert (gc.get_threshold(), gc.get_freeze_count(), logging_state()) == before
    assert (gc.get_threshold(), gc.get_freeze_count(), logging_state()) == before


async def test_a_served_app_applies_the_process_policies(tmp_path: Path, restored: None) -> None:
    """worker_app (what each served process runs) configures JSON logs at once, and once
    start-up is done freezes what it allocated and sets the young-generation thresholds
    (the old generation on a clock instead)."""
    app = process.worker_app(settings(tmp_path))
    assert any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
    unfrozen = gc.get_freeze_count()
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[:2] == gcpolicy.YOUNG_THRESHOLDS
        assert gc.get_threshold()[2] > 1_000_000
        assert gc.get_freeze_count() > unfrozen


async def test_no_access_log_survives_the_worker_logging_setup(
    tmp_path: Path, restored: None
) -> None:
    """--no-access-log reaches workers: their logging setup runs after uvicorn's, so it
    must not put the access log back."""
    process.worker_app(settings(tmp_path), access_log=False)
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    process.worker_app(settings(tmp_path), access_log=True)
    assert logging.getLogger("uvicorn.access").hasHandlers()


def test_the_worker_factory_pickles(tmp_path: Path) -> None:
    """uvicorn spawns workers with a pickle of its Config: the app factory bound to the
    resolved settings (credentials included) must survive it."""
    factory = functools.partial(process.worker_app, settings(tmp_path), access_log=False)
    copy = pickle.loads(pickle.dumps(factory))
    assert copy.func is process.worker_app
    assert copy.args == factory.args
    assert copy.keywords == {"access_log": False}


def test_the_supervisor_gives_a_starting_worker_time_to_import(tmp_path: Path) -> None:
    """uvicorn's own 5 s healthcheck killed replacement workers that were still importing
    the app on a busy machine, one after another (bench.scale: 104 in a row); `serve`
    waits 30 s, and an operator's explicit value still wins."""
    config = process.server_config(settings(tmp_path), workers=2)
    assert config.timeout_worker_healthcheck == process.WORKER_HEALTHCHECK_SECONDS == 30
    chosen = process.server_config(settings(tmp_path), workers=2, timeout_worker_healthcheck=9)
    assert chosen.timeout_worker_healthcheck == 9
