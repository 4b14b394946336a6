from django.urls import path

from reports import senderdns, views

app_name = "reports"

urlpatterns = [
    path("", views.index, name="index"),
    path("compare/", views.compare, name="compare"),
    path("campaigns/<int:pk>/", views.campaign_report, name="campaign"),
    path("campaigns/<int:pk>/live/", views.campaign_live, name="campaign_live"),
]
urlpatterns += [
    path("campaigns/<int:pk>/recipients/", views.campaign_recipients, name="recipients"),
    path("campaigns/<int:pk>/recipients/export/", views.campaign_recipients_export, name="recipients_export"),
    path("campaigns/<int:pk>/recipients/segment/", views.campaign_recipients_segment, name="recipients_segment"),
    path("recipients/<int:pk>/timeline/", views.recipient_timeline, name="timeline"),
    path("senders/", senderdns.senders_page, name="senders"),
    path("messages/", views.single_messages, name="messages"),
]
