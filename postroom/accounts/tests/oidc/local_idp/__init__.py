"""A small OpenID provider (django-oauth-toolkit) that the OIDC tests run on loopback.

It is test infrastructure, not part of Postroom: ``serve`` starts it in its own process with
its own settings, SQLite file and RS256 key, and a control endpoint lets a test create
identities (chosen ``sub``, email, password) and make the next token response carry a
tampered ID token.
"""
