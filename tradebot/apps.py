from django.apps import AppConfig


class TradebotConfig(AppConfig):
    name = "tradebot"
    verbose_name = "Bot"
