from django.urls import path

from campaigns import audience_views

app_name = "audiences"

urlpatterns = [
    path("", audience_views.index, name="index"),
]
