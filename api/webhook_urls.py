from django.urls import path

from api import webhook_views

app_name = "webhooks"

urlpatterns = [
    path("", webhook_views.endpoints, name="list"),
    path("<int:pk>/", webhook_views.detail, name="detail"),
    path("<int:pk>/disable/", webhook_views.disable, name="disable"),
    path("<int:pk>/enable/", webhook_views.enable, name="enable"),
    path("<int:pk>/secret/", webhook_views.renew_secret, name="renew_secret"),
    path("<int:pk>/delete/", webhook_views.delete, name="delete"),
]
