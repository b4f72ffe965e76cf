"""Seed the instrument table and the watchlist from broker.watchlist.DEFAULT_WATCHLIST."""

from django.db import migrations


def seed(apps, schema_editor):
    from broker.watchlist import DEFAULT_WATCHLIST

    Instrument = apps.get_model("feeds", "Instrument")
    for symbol, token, _ref_price in DEFAULT_WATCHLIST:
        Instrument.objects.get_or_create(
            exchange="NSE",
            token=token,
            defaults={
                "symbol": symbol,
                "exchange_type": 1,
                "name": symbol.removesuffix("-EQ"),
                "tick_size_paise": 5,
                "lot_size": 1,
                "on_watchlist": True,
                "active": True,
            },
        )


def unseed(apps, schema_editor):
    from broker.watchlist import DEFAULT_WATCHLIST

    Instrument = apps.get_model("feeds", "Instrument")
    tokens = [token for _symbol, token, _ref in DEFAULT_WATCHLIST]
    Instrument.objects.filter(exchange="NSE", token__in=tokens).delete()


class Migration(migrations.Migration):
    dependencies = [("feeds", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
