"""Forms of the notes app."""

from django import forms

from .models import Note


class NoteForm(forms.ModelForm):
    class Meta:
        model = Note
        fields = ("title", "body")


class UploadForm(forms.Form):
    file = forms.FileField()
    note = forms.CharField(required=False)
