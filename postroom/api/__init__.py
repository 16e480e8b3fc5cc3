"""Postroom's typed REST API (django-ninja), mounted at ``/api/v1/``; see ``postroom.api.urls``."""
