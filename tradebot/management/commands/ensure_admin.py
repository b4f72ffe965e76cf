"""Create the admin user once: from ADMIN_USERNAME / ADMIN_PASSWORD, or generated."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from tradebot.env import env_optional, env_str


class Command(BaseCommand):
    help = "Create the admin superuser if it does not exist yet."

    def handle(self, *args, **options) -> None:
        users = get_user_model()
        username = env_str("ADMIN_USERNAME", "admin")
        if users.objects.filter(username=username).exists():
            return
        password = env_optional("ADMIN_PASSWORD")
        generated = password is None
        if generated:
            password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        if generated:
            # Printed once, on purpose: nobody else knows it. Change it in the admin.
            self.stdout.write(
                self.style.WARNING(
                    f"admin user created: {username} / {password}  (shown once; "
                    "set ADMIN_PASSWORD to choose your own)"
                )
            )
        else:
            self.stdout.write(f"admin user created: {username} (password from ADMIN_PASSWORD)")
