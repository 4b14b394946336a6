from __future__ import annotations

from django.conf import settings
from django.urls import path

from campaigns.composer import views as views

app_name = "compose"

urlpatterns = [
    path("campaigns/<int:pk>/preview/", views.preview, name="preview"),
    path("campaigns/<int:pk>/preview/html/", views.preview_html, name="preview_html"),
    path("campaigns/<int:pk>/test-send/", views.test_send, name="test_send"),
    path("campaigns/<int:pk>/links/check/", views.link_check, name="link_check"),
    path("campaigns/<int:pk>/links/", views.link_check_results, name="link_results"),
    path("campaigns/<int:pk>/attachments/", views.attachments, name="attachments"),
    path(
        "campaigns/<int:pk>/attachments/<int:attachment_pk>/delete/",
        views.attachment_delete,
        name="attachment_delete",
    ),
    path("campaigns/<int:pk>/save-as-template/", views.save_template, name="save_template"),
    path("campaigns/templates/", views.templates, name="templates"),
    path("campaigns/templates/<int:template_pk>/use/", views.template_use, name="template_use"),
    path("campaigns/layouts/", views.layouts, name="layouts"),
    path("campaigns/layouts/new/", views.layout_create, name="layout_create"),
    path("campaigns/layouts/<int:layout_pk>/edit/", views.layout_edit, name="layout_edit"),
    path("campaigns/layouts/<int:layout_pk>/default/", views.layout_default, name="layout_default"),
    path("campaigns/layouts/<int:layout_pk>/delete/", views.layout_remove, name="layout_delete"),
    path("campaigns/compose/markdown/", views.markdown_html, name="markdown"),
    path("campaigns/compose/images/", views.image_upload, name="image_upload"),
]

if settings.SERVE_MEDIA and "://" not in settings.MEDIA_URL:
    urlpatterns.append(
        path(f"{settings.MEDIA_URL.strip('/')}/campaign-images/<str:name>", views.campaign_image, name="campaign_image")
    )
