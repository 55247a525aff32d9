"""The service entry point: what it does to the process around the app's own start and stop."""

import gc
from contextlib import asynccontextmanager

import pytest

from shared.serve import _startup_objects_set_aside


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process goes on collecting everything, as before


async def test_once_started_a_service_keeps_its_startup_objects_out_of_full_collections(unfrozen):
    steps = []

    @asynccontextmanager
    async def lifespan(_app):
        steps.append("started")
        yield {"ready": True}
        steps.append("stopped")

    def collected_over(thing) -> bool:
        return any(seen is thing for seen in gc.get_objects())

    made_at_start = {"places": []}
    assert collected_over(made_at_start)
    async with _startup_objects_set_aside(lifespan)(None) as state:
        assert steps == ["started"]
        assert state == {"ready": True}  # the app's own state reaches the server unchanged
        assert not collected_over(made_at_start)
        assert collected_over({"made after the start": []})
    assert steps == ["started", "stopped"]


async def test_a_service_that_fails_to_start_freezes_nothing(unfrozen):
    @asynccontextmanager
    async def lifespan(_app):
        raise RuntimeError("the store is away")
        yield

    with pytest.raises(RuntimeError, match="the store is away"):
        async with _startup_objects_set_aside(lifespan)(None):
            pass
    assert gc.get_freeze_count() == 0
