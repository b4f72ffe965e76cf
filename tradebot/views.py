"""A plain landing page and the machine-readable status, both read-only."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect

from tradebot.status import collect_status


def home(request: HttpRequest) -> HttpResponse:
    return redirect("admin:index")


def status_json(request: HttpRequest) -> JsonResponse:
    if not request.user.is_staff:
        return JsonResponse({"error": "log in to the admin first"}, status=403)
    return JsonResponse(collect_status())
