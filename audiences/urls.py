from django.urls import path

from audiences import views as views

app_name = "audiences"

urlpatterns = [
    path("", views.index, name="index"),
    path("contacts/", views.contacts, name="contacts"),
    path("contacts/new/", views.contact_create, name="contact_create"),
    path("contacts/bulk/", views.contacts_bulk, name="contacts_bulk"),
    path("contacts/export/", views.contacts_export, name="contacts_export"),
    path("contacts/<int:pk>/", views.contact_edit, name="contact_edit"),
    path("contacts/<int:pk>/delete/", views.contact_delete, name="contact_delete"),
    path("lists/", views.lists, name="lists"),
    path("lists/<int:pk>/", views.list_detail, name="list_detail"),
    path("lists/<int:pk>/delete/", views.list_delete, name="list_delete"),
    path("lists/<int:pk>/export/", views.list_export, name="list_export"),
    path("segments/", views.segments, name="segments"),
    path("segments/new/", views.segment_create, name="segment_create"),
    path("segments/preview/", views.segment_preview, name="segment_preview"),
    path("segments/<int:pk>/", views.segment_edit, name="segment_edit"),
    path("segments/<int:pk>/delete/", views.segment_delete, name="segment_delete"),
    path("segments/<int:pk>/export/", views.segment_export, name="segment_export"),
    path("imports/", views.imports, name="imports"),
    path("imports/<int:pk>/", views.import_detail, name="import_detail"),
    path("imports/<int:pk>/columns/", views.import_mapping, name="import_mapping"),
    path("imports/<int:pk>/cancel/", views.import_discard, name="import_discard"),
    path("imports/<int:pk>/progress/", views.import_progress, name="import_progress"),
    path("imports/<int:pk>/rejected.csv", views.import_rejected, name="import_rejected"),
    path("suppressions/", views.suppressions, name="suppressions"),
    path("suppressions/<int:pk>/remove/", views.suppression_remove, name="suppression_remove"),
]
