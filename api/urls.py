from django.urls import path

from api import views

app_name = "api_keys"

urlpatterns = [
    path("", views.keys, name="list"),
    path("<int:pk>/revoke/", views.revoke, name="revoke"),
]
