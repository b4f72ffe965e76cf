from django.apps import AppConfig
from django.db.models.signals import post_migrate


class HealthConfig(AppConfig):
    name = "health"

    def ready(self) -> None:
        from health.schedules import install_schedules

        post_migrate.connect(install_schedules, sender=self)
