from django.urls import path

from tracking import views

app_name = "tracking"

urlpatterns = [
    path("ses/", views.ses_webhook, name="ses_webhook"),
    path("events/", views.event_list, name="events"),
]
