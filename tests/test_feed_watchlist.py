"""The watchlist lives in the database; changing it reaches the running feed."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from broker.watchlist import DEFAULT_WATCHLIST
from feeds.config import FeedConfig
from feeds.credentials import SessionCredentials
from feeds.models import Instrument
from feeds.testing import fast_config, running_worker, wait_for
from feeds.worker import FeedWorker
from tradebot import keys

STREAM = keys.TICKS_STREAM.format(exchange_type=1)


@pytest.mark.django_db
def test_the_migration_seeds_the_default_watchlist():
    on_watchlist = Instrument.objects.filter(on_watchlist=True, active=True)

    assert on_watchlist.count() == len(DEFAULT_WATCHLIST) == 50
    sbin = Instrument.objects.get(exchange="NSE", token="3045")
    assert (sbin.symbol, sbin.exchange_type, sbin.tick_size_paise) == ("SBIN-EQ", 1, 5)


def tokens_since(redis_client, mark: str) -> set[str]:
    return {fields["tk"] for _id, fields in redis_client.xrange(STREAM, min=mark)}


def watch(token: str, on: bool = True) -> None:
    symbol = next(s for s, t, _ in DEFAULT_WATCHLIST if t == token)
    Instrument.objects.update_or_create(
        exchange="NSE", token=token, defaults={"symbol": symbol, "on_watchlist": on}
    )


@pytest.mark.django_db(transaction=True)
def test_watchlist_changes_reach_the_running_worker_without_a_restart(simulator, redis_client):
    Instrument.objects.update(on_watchlist=False)
    watch("3045")
    watch("1594")
    watch("11536", on=False)
    config: FeedConfig = fast_config(simulator.ws_url)
    worker = FeedWorker(config, SessionCredentials(), watchlist_poll_seconds=3600)

    with running_worker(worker):
        wait_for(lambda: tokens_since(redis_client, "-") == {"3045", "1594"}, 10, "two tokens")

        watch("2885")  # saved in the admin: the signal tells the worker
        wait_for(lambda: "2885" in tokens_since(redis_client, "-"), 5, "the added token")

        watch("1594", on=False)
        wait_for(lambda: (1, "1594") not in worker.watchlist, 5, "the removal applied")
        mark = redis_client.xadd("probe", {"x": 1})
        Instrument.objects.filter(token="11536").update(on_watchlist=True)  # no signal
        call_command("reload_watchlist")
        wait_for(lambda: "11536" in tokens_since(redis_client, mark), 5, "reload command")

        wait_for(lambda: {"3045", "2885"} <= tokens_since(redis_client, mark), 5, "the rest")
        assert "1594" not in tokens_since(redis_client, mark)
        assert worker.watchlist == {(1, "3045"), (1, "2885"), (1, "11536")}
