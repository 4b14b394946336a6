from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("campaigns/", views.campaign_list, name="list"),
    path("campaigns/new/", views.campaign_create, name="create"),
    path("campaigns/<int:pk>/", views.campaign_detail, name="detail"),
    path("campaigns/<int:pk>/edit/", views.campaign_edit, name="edit"),
    path("campaigns/<int:pk>/progress/", views.campaign_progress, name="progress"),
    path("campaigns/<int:pk>/send/", views.campaign_send, name="send"),
    path("campaigns/<int:pk>/schedule/", views.campaign_schedule, name="schedule"),
    path("campaigns/<int:pk>/unschedule/", views.campaign_unschedule, name="unschedule"),
    path("campaigns/<int:pk>/pause/", views.campaign_pause, name="pause"),
    path("campaigns/<int:pk>/resume/", views.campaign_resume, name="resume"),
    path("campaigns/<int:pk>/cancel/", views.campaign_cancel, name="cancel"),
    path("campaigns/<int:pk>/duplicate/", views.campaign_duplicate, name="duplicate"),
    path("u/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("u/<str:token>/preferences/", views.preferences, name="preferences"),
    path("u/<str:token>/resubscribe/", views.resubscribe, name="resubscribe"),
    path("m/<str:token>/", views.view_online, name="view_online"),
    path("brand/<int:layout_pk>.css", views.layout_colours, name="layout_colours"),
]
