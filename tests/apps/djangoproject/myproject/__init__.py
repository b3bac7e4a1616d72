"""The Django test project served by ferrocorn in tests/python/test_django.py."""
