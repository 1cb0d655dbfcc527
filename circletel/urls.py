"""URL configuration: the admin lives at /admin/, health at /healthz, metrics at /metrics."""

from django.contrib import admin
from django.urls import path

from billing_sync import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
]
