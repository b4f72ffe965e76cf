"""The example strategies: the EMA crossover on (the demo's paper order), the breakout off."""

from django.db import migrations

DEFAULTS = (
    ("ema-crossover-demo", "ema_crossover", {"fast": 3, "slow": 8, "allow_short": False}, True),
    (
        "opening-range-breakout",
        "opening_range_breakout",
        {"minutes": 15, "target_r": 2.0, "allow_short": False},
        False,
    ),
)


def seed(apps, schema_editor):
    StrategyConfig = apps.get_model("strategies", "StrategyConfig")
    for name, kind, params, enabled in DEFAULTS:
        StrategyConfig.objects.get_or_create(
            name=name, defaults={"kind": kind, "params": params, "enabled": enabled}
        )


def unseed(apps, schema_editor):
    StrategyConfig = apps.get_model("strategies", "StrategyConfig")
    StrategyConfig.objects.filter(name__in=[d[0] for d in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("strategies", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
