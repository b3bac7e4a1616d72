"""The notes app: a model, a CSRF-protected form, uploads and streamed/file responses."""
