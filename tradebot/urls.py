from django.contrib import admin
from django.urls import path

from tradebot import views

admin.site.site_header = "tradebot"
admin.site.site_title = "tradebot"
admin.site.index_title = "Bot state, market data, orders and health"

urlpatterns = [
    path("", views.home),
    path("status.json", views.status_json),
    path("admin/", admin.site.urls),
]
