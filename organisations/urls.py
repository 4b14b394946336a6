from django.urls import path

from organisations import views

app_name = "organisations"

urlpatterns = [
    path("", views.detail, name="detail"),
    path("switch/", views.switch, name="switch"),
    path("members/", views.members, name="members"),
    path("members/<int:pk>/role/", views.member_role, name="member_role"),
    path("members/<int:pk>/remove/", views.member_remove, name="member_remove"),
    path("children/", views.children, name="children"),
    path("audit/", views.audit_log, name="audit"),
    path("audit/export/", views.audit_export, name="audit_export"),
    path("usage/", views.usage, name="usage"),
    path("usage/export/", views.usage_export, name="usage_export"),
    path("usage/<int:pk>/quota/", views.quota, name="quota"),
    path("senders/", views.senders, name="senders"),
    path("senders/<int:pk>/check/", views.sender_check, name="sender_check"),
    path("senders/<int:pk>/remove/", views.sender_remove, name="sender_remove"),
    path("all/", views.all_organisations, name="all"),
    path("reputation/", views.reputation, name="reputation"),
]
