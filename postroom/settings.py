"""Postroom's one settings module: everything comes from environment variables (see README).

Shapes: with no ``DATABASE_URL`` and no ``REDIS_URL`` Postroom runs embedded (SQLite in WAL mode
and the database task backend under ``POSTROOM_DATA_DIR``); with them it runs scaled out.
Production hardening follows ``POSTROOM_PUBLIC_URL``: an ``https://`` URL turns on secure,
``__Host-`` cookies, HSTS and the HTTPS redirect; plain ``http://`` is accepted only on loopback.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

from postroom.core.env import ConfigError, Env
from postroom.core.keyfiles import keep_private, load_master_keys, load_or_create_secret_key
from postroom.core.net import is_loopback_name

env = Env()

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(env.string("POSTROOM_DATA_DIR", str(Path.cwd() / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)

# --- Public address and transport security ---------------------------------------------------
PUBLIC_URL = env.url("POSTROOM_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
_public = urlsplit(PUBLIC_URL)
PUBLIC_HOST = _public.hostname or "127.0.0.1"



HTTPS = _public.scheme == "https"
if not HTTPS and not is_loopback_name(PUBLIC_HOST):
    raise ConfigError(
        "POSTROOM_PUBLIC_URL",
        f"{PUBLIC_URL!r} is plain http on a host other than loopback",
        "serve Postroom behind TLS and use an https:// URL",
    )

DEBUG = env.boolean("POSTROOM_DEBUG", False)
SECRET_KEY = env.secret("POSTROOM_SECRET_KEY") or load_or_create_secret_key(DATA_DIR / "secret_key")
if len(SECRET_KEY) < 50:
    raise ConfigError("POSTROOM_SECRET_KEY", "it is shorter than 50 characters", "generate a long random value")

_master_key_file = env.string("POSTROOM_MASTER_KEY_FILE")
MASTER_KEY_PATH = Path(_master_key_file) if _master_key_file else DATA_DIR / "master.key"
# Loaded here so that a missing or damaged key stops start-up (fail closed), never a request.
MASTER_KEYS = load_master_keys(MASTER_KEY_PATH, create=not _master_key_file)

ALLOWED_HOSTS = env.strings("POSTROOM_ALLOWED_HOSTS", [PUBLIC_HOST])
CSRF_TRUSTED_ORIGINS = [PUBLIC_URL]
if env.boolean("POSTROOM_BEHIND_PROXY", False):
    # Only behind a proxy that overwrites this header; otherwise a client could claim HTTPS.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
TRUSTED_PROXY_COUNT = env.integer("POSTROOM_TRUSTED_PROXIES", 0, minimum=0, maximum=5)

SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 63072000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

SESSION_COOKIE_NAME = "__Host-postroom-session" if HTTPS else "postroom-session"
CSRF_COOKIE_NAME = "__Host-postroom-csrf" if HTTPS else "postroom-csrf"
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Django's database sessions, loaded with a constant query (postroom/accounts/session_store.py).
SESSION_ENGINE = "postroom.accounts.session_store"
# Sliding idle timeout; postroom.accounts.middleware refreshes it at most once a minute and
# enforces the absolute lifetime from the login time kept in the session.
SESSION_COOKIE_AGE = int(timedelta(days=14).total_seconds())
SESSION_ABSOLUTE_LIFETIME = timedelta(days=30)
SESSION_REFRESH_INTERVAL = timedelta(minutes=1)

# --- Applications ------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "csp",
    "django_tasks",
    "django_tasks_db",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.usersessions",
    "postroom.core",
    "postroom.audit",
    "postroom.orgs",
    "postroom.accounts",
    "postroom.mailboxes",
    "postroom.conversations",
    "postroom.contacts",
    "postroom.imageproxy",
    "postroom.live",
    "postroom.outbox",
    "postroom.comments",
    "postroom.notifications",
    "postroom.responses",
    "postroom.rules",
    "postroom.sync",
    "postroom.web",
    "postroom.ops",
    "postroom.mime",
]

MIDDLEWARE = [
    "postroom.web.middleware.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Above WhiteNoise so that static files carry the same headers as pages (SECURITY.md R51).
    "postroom.web.middleware.SecurityHeadersMiddleware",
    "csp.middleware.CSPMiddleware",
    "postroom.web.middleware.RejectDiagnosticMethodsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The signed-in user's memberships and second factor, read once for the request (orgs.viewer).
    "postroom.orgs.viewer.ViewerMiddleware",
    "postroom.accounts.middleware.SessionLifetimeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # Not allauth.usersessions' middleware: it writes the session list on every request;
    # SessionLifetimeMiddleware records activity at most once a minute instead.
    "postroom.accounts.middleware.RequireTwoFactorMiddleware",
]

# Uploads stay in memory and never reach the disk in plaintext (SECURITY.md R45; see
# postroom/core/uploads.py): the files of one request total at most POSTROOM_MAX_UPLOAD_BYTES (the
# largest any form or API takes: 25 MB of attachments); a larger body is refused with 413 before
# Django's ASGI handler spools it, and the spool is as large as the largest accepted body, so it
# never rolls over to a temporary file.
POSTROOM_MAX_UPLOAD_BYTES = 25 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # Django's default, named: the non-file part of a body
POSTROOM_MAX_REQUEST_BYTES = POSTROOM_MAX_UPLOAD_BYTES + DATA_UPLOAD_MAX_MEMORY_SIZE + 1024 * 1024  # + multipart framing
FILE_UPLOAD_MAX_MEMORY_SIZE = POSTROOM_MAX_REQUEST_BYTES
FILE_UPLOAD_HANDLERS = ["postroom.core.uploads.MemoryOnlyUploadHandler"]

ROOT_URLCONF = "postroom.urls"
ASGI_APPLICATION = "postroom.asgi.application"
WSGI_APPLICATION = "postroom.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Our templates first, so they override django-allauth's layouts and elements.
        "DIRS": [PACKAGE_DIR / "web" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "postroom.web.context_processors.shell",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------------------
_database_url = env.secret("DATABASE_URL")
if _database_url:
    try:
        _database = dj_database_url.parse(_database_url)
    except ValueError as error:
        raise ConfigError("DATABASE_URL", str(error).rstrip("."), "use postgres://user:password@host:5432/name") from None
    if _database["ENGINE"] != "django.db.backends.postgresql":
        raise ConfigError("DATABASE_URL", "only PostgreSQL is supported for the scaled-out shape", "use a postgres:// URL, or unset it for the embedded SQLite")
    # A connection pool per process (psycopg_pool). Under ASGI requests run on as many threads as
    # run at once (postroom/asgi.py), so persistent per-thread connections (CONN_MAX_AGE) pile up until
    # PostgreSQL refuses clients; the pool bounds them and still saves the connect per request.
    _database.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": env.integer("POSTROOM_DATABASE_POOL_SIZE", 8, minimum=1, maximum=100), "timeout": 20}
    # Parameters bound by the server and prepared statements: a query text run a few times on a
    # pooled connection is planned once, not on every page. Planning was most of the database's
    # time on a page (the bell: ~5 ms planned against 0.2 ms run; bench/README.md, "The
    # request's thread, prepared statements…"; test_database). psycopg keeps the 100 most
    # recent per connection.
    _database["OPTIONS"].update(server_side_binding=True, prepare_threshold=2)
    # Django's backend, with the parameter limit that server-side binding brings (bulk writes in
    # batches that fit): postroom/core/postgresql.
    _database["ENGINE"] = "postroom.core.postgresql"
    DATABASES = {"default": _database}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(keep_private(DATA_DIR / "postroom.sqlite3")),
            "OPTIONS": {
                # WAL lets readers work while one writer writes; IMMEDIATE takes the write lock at
                # BEGIN so two writers queue (busy timeout) instead of failing with "locked".
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Tasks, live updates -----------------------------------------------------------------------
REDIS_URL = env.secret("REDIS_URL")
if REDIS_URL:
    env.url("REDIS_URL", schemes=("redis", "rediss"))
    INSTALLED_APPS.append("django_rq")
    RQ_QUEUES = {"default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600}}
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
else:
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
# Live updates (postroom.live.bus): Redis pub/sub when there is Redis, else the database's event
# log, polled by each web process (one query per interval for all its open pages).
LIVE_BUS = "redis" if REDIS_URL else "database"
LIVE_REDIS_CHANNEL = "postroom:live"
LIVE_POLL_SECONDS = 0.25

# --- Outgoing system mail (verification, reset, invitations, security notices) -----------------
_smtp_url = env.secret("POSTROOM_SMTP_URL")
DEFAULT_FROM_EMAIL = env.string("POSTROOM_FROM_EMAIL", f"Postroom <postroom@{PUBLIC_HOST}>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
if _smtp_url:
    from postroom.core.mailconfig import smtp_settings_from_url

    globals().update(smtp_settings_from_url(_smtp_url))
elif is_loopback_name(PUBLIC_HOST):
    # No mail server on a trial install: messages (with their links) go to the console of `postroom run`.
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
else:
    # A real deployment without a mail server must not print reset and invitation links into its
    # service logs (SECURITY.md R54): mail is dropped with a warning naming the fix.
    EMAIL_BACKEND = "postroom.core.mailconfig.UnconfiguredEmailBackend"

# --- Authentication (django-allauth) -----------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "allauth.account.auth_backends.AuthenticationBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 15}},
    {"NAME": "postroom.accounts.passwords.MaximumLengthValidator", "OPTIONS": {"max_length": 1024}},
    {"NAME": "postroom.accounts.passwords.CommonPasswordValidator"},
    {"NAME": "postroom.accounts.passwords.ContextWordsValidator"},
]
PASSWORD_RESET_TIMEOUT = 3600
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "web:home"

ACCOUNT_ADAPTER = "postroom.accounts.adapters.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_EMAIL_NOTIFICATIONS = True
ACCOUNT_REAUTHENTICATION_REQUIRED = True
ACCOUNT_REAUTHENTICATION_TIMEOUT = 300
# A password step waiting for its second factor is forgotten after five minutes.
ACCOUNT_LOGIN_TIMEOUT = 300
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Postroom] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if HTTPS else "http"
ACCOUNT_CHANGE_EMAIL = True
ACCOUNT_MAX_EMAIL_ADDRESSES = 2
# Failed logins are throttled in the database by postroom.accounts.throttle (shared by every
# process, with a lockout policy that does not let strangers lock owners out); allauth's
# per-process cache counter for them would only add a cheap 5-minute lockout per address.
ACCOUNT_RATE_LIMITS = {"login_failed": None}

MFA_ADAPTER = "postroom.accounts.adapters.MFAAdapter"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = True
MFA_TOTP_ISSUER = "Postroom"
MFA_RECOVERY_CODE_COUNT = 10
# 20 digits drawn from 80 HMAC bits: about 66 bits per code (SECURITY.md R10 asks for 64).
MFA_RECOVERY_CODE_DIGITS = 20
MFA_RECOVERY_CODES_SHOW_ONCE = True
MFA_TOTP_TOLERANCE = 0
MFA_FORMS = {
    "authenticate": "postroom.accounts.mfa_forms.ThrottledAuthenticateForm",
    "reauthenticate": "postroom.accounts.mfa_forms.ThrottledReauthenticateForm",
    "activate_totp": "postroom.accounts.mfa_forms.OneTimeActivateTOTPForm",
}
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = not HTTPS

SOCIALACCOUNT_ADAPTER = "postroom.accounts.adapters.SocialAccountAdapter"
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = False
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_ONLY = False

from postroom.accounts.oidc_config import oidc_providers_from_env  # noqa: E402

_oidc_apps = oidc_providers_from_env(env)
SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"OAUTH_PKCE_ENABLED": True, "APPS": _oidc_apps}}

# Shows "last activity" in the session list; recorded by SessionLifetimeMiddleware once a minute.
USERSESSIONS_TRACK_ACTIVITY = True

# --- Content security policy (django-csp 4, nonce based) ---------------------------------------
from csp.constants import NONCE, NONE, SELF  # noqa: E402


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


_oidc_origins = sorted({_origin(app["settings"]["server_url"]) for app in _oidc_apps})

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        # Browsers apply form-action to the redirect after a POST too, so the "continue with <IdP>"
        # form needs each OpenID provider's origin; nothing else may receive a form.
        "form-action": [SELF, *_oidc_origins],
        "frame-ancestors": [NONE],
        "frame-src": [SELF],
        "base-uri": [NONE],
        "object-src": [NONE],
        "manifest-src": [SELF],
        "report-uri": ["/csp-report/"],
    },
}

# --- Static files, logging, misc ---------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# WhiteNoise serves the packaged static files straight from the apps (no collectstatic step).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False
LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_TZ = True
USE_I18N = True

POSTROOM_SECURITY_CONTACT = env.string("POSTROOM_SECURITY_CONTACT", f"mailto:security@{PUBLIC_HOST}")
POSTROOM_PRIVACY_POLICY_FILE = env.readable_file("POSTROOM_PRIVACY_POLICY_FILE")
# Loopback ports that server-side fetching (postroom.core.fetch) may reach, for tests only. Fixed
# to none here, with no variable to change it: a test sets it through its own settings, and the
# fetcher ignores it whenever this module is the settings module (SECURITY.md R30).
POSTROOM_FETCH_LOOPBACK_TEST_PORTS: frozenset[int] = frozenset()
# Our own page instead of Django's, which has an inline style our CSP blocks and reads differently.
CSRF_FAILURE_VIEW = "postroom.web.views.csrf_failure"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation": {"()": "postroom.web.middleware.CorrelationIdFilter"}},
    "formatters": {
        "plain": {
            "()": "postroom.core.logs.SafeFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s",
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["correlation"]}},
    "root": {"handlers": ["console"], "level": env.choice("POSTROOM_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))},
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        # IMAPClient logs every command at DEBUG: search criteria, and the start of each APPEND
        # literal (the header of a sent message). Content stays out of the logs at every level (R54).
        "imapclient": {"level": "INFO"},
    },
}
