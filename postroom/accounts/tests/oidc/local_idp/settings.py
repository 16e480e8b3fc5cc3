"""Settings of the local OpenID provider; everything variable comes from LOCAL_IDP_* variables."""

import os
from pathlib import Path

STATE_DIR = Path(os.environ["LOCAL_IDP_STATE_DIR"])

SECRET_KEY = os.environ["LOCAL_IDP_CONTROL_TOKEN"] * 2
DEBUG = False
# The provider answers as 127.0.0.1 and as localhost: the two host names give two issuers
# (issuer URLs are built from the request), which the tests use as two separate providers.
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "postroom.accounts.tests.oidc.local_idp.urls"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).parent / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(STATE_DIR / "idp.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
# The provider's own cookies must not collide with Postroom's on the same host name.
SESSION_COOKIE_NAME = "local-idp-session"
CSRF_COOKIE_NAME = "local-idp-csrf"
LOGIN_URL = "/accounts/login/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # test identities only: speed over strength

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": (STATE_DIR / "signing-key.pem").read_text(),
    "PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http"],
    "SCOPES": {"openid": "OpenID Connect", "profile": "Your name", "email": "Your email address"},
    "OAUTH2_VALIDATOR_CLASS": "postroom.accounts.tests.oidc.local_idp.validator.ChosenSubjectValidator",
}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "ERROR"}}
