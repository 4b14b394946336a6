from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from api.v1 import api
from cobalt_mail import health, views

urlpatterns = [
    path("", views.home, name="home"),
    # Browsers ask for /favicon.ico whatever the pages link to (feed readers, bookmarks, PDFs).
    path("favicon.ico", RedirectView.as_view(url=static("favicon.ico")), name="favicon"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("reports/", include("reports.urls")),
    path("settings/", views.settings_page, name="settings"),
    path("organisations/", include("organisations.urls")),
    path("organisations/api-keys/", include("api.urls")),
    path("organisations/webhooks/", include("api.webhook_urls")),
    path("admin/", admin.site.urls),
    path("audiences/", include("audiences.urls")),
    path("", include("campaigns.composer.urls")),
    path("", include("campaigns.urls")),
    path("tracking/", include("tracking.urls")),
    path("health/", health.health, name="health"),
    path("metrics", health.metrics, name="metrics"),  # Prometheus's default path, no slash
    path("api/v1/", api.urls),
]
