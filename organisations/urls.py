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
    path("all/", views.all_organisations, name="all"),
]
