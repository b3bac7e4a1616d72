"""URLs of the notes app."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("notes/<int:pk>/", views.note_detail, name="note-detail"),
    path("upload/", views.upload, name="upload"),
    path("stream/", views.stream, name="stream"),
    path("release/", views.release, name="release"),
    path("download/", views.download, name="download"),
    path("api/notes/", views.api_notes, name="api-notes"),
]
