from django.apps import AppConfig


class FeedsConfig(AppConfig):
    name = "feeds"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from feeds.control import notify_watchlist_changed
        from feeds.models import Instrument

        post_save.connect(notify_watchlist_changed, sender=Instrument,
                          dispatch_uid="feeds.watchlist.saved")
        post_delete.connect(notify_watchlist_changed, sender=Instrument,
                            dispatch_uid="feeds.watchlist.deleted")
