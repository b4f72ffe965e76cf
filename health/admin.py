from django.contrib import admin

from health.models import HealthCheck


@admin.register(HealthCheck)
class HealthCheckAdmin(admin.ModelAdmin):
    list_display = ("at", "overall", "feed", "redis", "database", "workers", "session")
    list_filter = ("overall", "feed")
    readonly_fields = [f.name for f in HealthCheck._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
