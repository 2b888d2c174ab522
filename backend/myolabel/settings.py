"""MyoLabel settings: everything comes from the environment (see README, "Configuration").

Two run modes, chosen by environment variables alone:

* embedded (default): SQLite, media on local disk, kombu's filesystem broker and a
  database-backed relay that carries worker progress to websockets across processes.
  Nothing but Python is needed.
* production (``MYOLABEL_MODE=production``): ``DATABASE_URL`` (PostgreSQL) and
  ``REDIS_URL`` (Celery broker, result backend and channel layer) are required, and
  so is ``DJANGO_SECRET_KEY``; media go to a shared path or an S3-compatible bucket.

Each component also follows its own variable, so ``DATABASE_URL`` and ``REDIS_URL``
may be combined with embedded mode (the test suite does this).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import environ
from csp import constants as csp_constants
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

MODE = env.str("MYOLABEL_MODE", default="embedded")
if MODE not in {"embedded", "production"}:
    raise ImproperlyConfigured(f"MYOLABEL_MODE must be 'embedded' or 'production', not {MODE!r}")
PRODUCTION = MODE == "production"

DATA_DIR = Path(env.str("MYOLABEL_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

REDIS_URL = env.str("REDIS_URL", default="")
if PRODUCTION:
    for required in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY"):
        if not env.str(required, default=""):
            raise ImproperlyConfigured(f"{required} must be set when MYOLABEL_MODE=production")


def _embedded_secret_key() -> str:
    # A key generated once per data folder: sessions survive restarts without a setting.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or _embedded_secret_key()
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "axes",
    "csp",
    "backend.core",
    "backend.projects",
    "backend.imaging",
    "backend.acquisition",
    "backend.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "backend.core.staticfiles.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "backend.core.session_limits.SessionLimitsMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "backend.core.csp.SameOriginSocketsCSPMiddleware",
    # Last, as axes asks: it turns a lock-out flagged during the login into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "backend.myolabel.urls"
WSGI_APPLICATION = "backend.myolabel.wsgi.application"
ASGI_APPLICATION = "backend.myolabel.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker process writes; IMMEDIATE
    # transactions take the write lock up front instead of failing half-way.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
else:
    # 0: under ASGI every request thread would otherwise keep its own connection open
    # (20 concurrent annotators exhausted PostgreSQL's 100 connections).
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Django's cursors bind on the client and never prepare; backend.core.sql prepares the
    # hot paths' statements (prepare=True) only when this is not None. Off behind PgBouncer
    # older than 1.21 in transaction mode, which loses prepared statements between transactions.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        1_000_000 if env.bool("DATABASE_PREPARED_STATEMENTS", default=True) else None)
    # The web process (asgi.py turns this on) borrows connections from a psycopg pool
    # instead of opening one per request: connecting cost more than a slice query.
    # Workers keep plain connections: their threads live long and a pool must not
    # be shared across Celery's forked children.
    if env.bool("MYOLABEL_DB_POOL", default=False) and DATABASES["default"]["CONN_MAX_AGE"] == 0:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 2,
            "max_size": env.int("DATABASE_POOL_SIZE", default=20),
            "timeout": 30,
        }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Axes first: it refuses a locked-out (user, address) before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Files --------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("MYOLABEL_STATIC_ROOT", default=str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "frontend" / "static"]
MEDIA_ROOT = Path(env.str("MYOLABEL_MEDIA_ROOT", default=str(DATA_DIR / "media")))
MEDIA_URL = "/media/"
FILE_UPLOAD_TEMP_DIR = str(DATA_DIR / "uploads")
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
# Uploads of 1 GB must stream to disk, never sit in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024

S3_BUCKET = env.str("MYOLABEL_S3_BUCKET", default="")
if S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env.str("MYOLABEL_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("MYOLABEL_S3_REGION", default="") or None,
            "location": env.str("MYOLABEL_S3_PREFIX", default="media"),
            "file_overwrite": False,
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    # Hashed names after collectstatic (which `manage.py up` runs); plain names before.
    "staticfiles": {"BACKEND": "backend.core.staticfiles.CollectedOrPlainStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- REST API -----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Every operation documents the shared Error body for its error answers.
    "DEFAULT_SCHEMA_CLASS": "backend.core.schema.ErrorDocumentingAutoSchema",
    # One error shape for every error: {"detail", "code"[, "errors"]} (backend/core/errors.py).
    "EXCEPTION_HANDLER": "backend.core.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MyoLabel API",
    "DESCRIPTION": "CT pools, projects, active-learning steps and pixel queries.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # <id:...> path parameters (backend.core.ids): 1 to 2**63 - 1.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "format": "int64", "minimum": 1,
                                        "maximum": 2**63 - 1}},
    # Several models have a "status" field; name their enums apart in the schema.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "backend.imaging.models.ImportJob.Status",
        "QueryStatusEnum": "backend.acquisition.models.Query.Status",
        "HealthStatusEnum": ["ok", "degraded"],
    },
}

# --- Celery -------------------------------------------------------------------------
BROKER_DIR = DATA_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    # Socket timeouts: a broker that is down or hangs fails a publish in seconds (an import
    # answers 503), instead of blocking the web request for ever (kombu's default).
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 6 * 3600, "socket_timeout": 5.0,
                                             "socket_connect_timeout": 3.0}
else:
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    CELERY_RESULT_BACKEND = f"db+sqlite:///{DATA_DIR / 'celery-results.sqlite3'}"
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_EXTENDED = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Channels -----------------------------------------------------------------------
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    # One web process: in-memory groups, fed across processes by backend.core.relay.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
REALTIME_RELAY = not REDIS_URL
REALTIME_RELAY_POLL_SECONDS = env.float("MYOLABEL_RELAY_POLL_SECONDS", default=0.25)

# --- ML -----------------------------------------------------------------------------
MYOLABEL_DEVICE = env.str("MYOLABEL_DEVICE", default="auto")  # auto | cpu | cuda
# Torch threads per worker task. 1 by default: web server and worker share a small host
# in embedded mode, and spinning OpenMP threads on a busy CPU run many times slower.
MYOLABEL_TORCH_THREADS = env.int("MYOLABEL_TORCH_THREADS", default=1)
# Slice PNGs: 0 stores the pixels (about 260 kB per 512 x 512 slice, no CPU); 1 to 9 deflate
# with run-length matching, about 105 kB for about 1.2 ms of CPU (backend/imaging/slices.py).
MYOLABEL_PNG_LEVEL = env.int("MYOLABEL_PNG_LEVEL", default=1)
# CT slice requests served beside Django (backend/imaging/slice_fastpath.py); false: through the DRF views.
MYOLABEL_FAST_SLICES = env.bool("MYOLABEL_FAST_SLICES", default=True)
MYOLABEL_CACHE_DIR = Path(env.str("MYOLABEL_CACHE_DIR", default=str(DATA_DIR / "cache")))

# --- Security -----------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    _https = env.bool("MYOLABEL_HTTPS", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=_https)
    SESSION_COOKIE_SECURE = _https
    CSRF_COOKIE_SECURE = _https
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000 if _https else 0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_HSTS_PRELOAD = False
    # Documented exceptions for `check --deploy`: subdomains and preload are a
    # site-wide decision of the hospital's domain owner, not of this application.
    SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]

# --- Logins, sessions and Content-Security-Policy (README "Security") -------------------
# Reverse proxies (addresses or networks) whose X-Forwarded-For is believed; none by default,
# so a client cannot choose the address its login failures and token throttle count under.
MYOLABEL_TRUSTED_PROXIES = env.list("MYOLABEL_TRUSTED_PROXIES", default=[])
# django-axes counts failed logins in the database, shared by every web process, per pair of
# user name and client address: a guesser is stopped at once, and nobody can lock a colleague
# out of their own workstation by mistyping that colleague's name elsewhere.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env.int("MYOLABEL_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("MYOLABEL_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "backend.core.client_ip.client_ip"
AXES_RESET_ON_SUCCESS = True
# Tries during a lock-out neither count nor extend it: the page can say when it ends.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "backend.core.login_limits.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
# DRF's own throttles count the connecting address; the token endpoint's uses client_ip.
REST_FRAMEWORK["NUM_PROXIES"] = 0
# JSON only: DRF's browsable HTML API has inline styles the policy below refuses (pygments'
# <style>, style= in its nested forms); Swagger UI at /api/docs/ explores the API instead.
REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"] = ["rest_framework.renderers.JSONRenderer"]
# The throttle's counters: shared by every web process when Redis is there (production).
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL, "KEY_PREFIX": "myolabel-cache"}}

# Sessions end MYOLABEL_SESSION_HOURS after login, or after MYOLABEL_SESSION_IDLE_MINUTES
# without a request (backend.core.session_limits).
MYOLABEL_SESSION_ABSOLUTE_SECONDS = round(env.float("MYOLABEL_SESSION_HOURS", default=12.0) * 3600)
MYOLABEL_SESSION_IDLE_SECONDS = round(env.float("MYOLABEL_SESSION_IDLE_MINUTES", default=60.0) * 60)
SESSION_COOKIE_AGE = MYOLABEL_SESSION_ABSOLUTE_SECONDS
SESSION_SAVE_EVERY_REQUEST = False

# Every script, style, image and socket comes from this site; no inline code at all.
# data: images: Swagger UI's icons (/api/docs/). Extended per response by backend.core.csp
# with ws(s):// of the page's host.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp_constants.SELF],
        "script-src": [csp_constants.SELF],
        "style-src": [csp_constants.SELF],
        "img-src": [csp_constants.SELF, "data:"],
        "font-src": [csp_constants.SELF],
        "connect-src": [csp_constants.SELF],
        "object-src": [csp_constants.NONE],
        "base-uri": [csp_constants.SELF],
        "form-action": [csp_constants.SELF],
        "frame-ancestors": [csp_constants.NONE],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("MYOLABEL_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Import limits (backend.imaging.importing, backend.imaging.apis_imports) ------------------
# Bytes one upload job may receive, all its files together (chunked or multipart).
MYOLABEL_MAX_UPLOAD_BYTES = env.int("MYOLABEL_MAX_UPLOAD_BYTES", default=4 * 2**30)
# Largest single chunk of the chunked-upload API; the browser sends 8 MiB.
MYOLABEL_MAX_CHUNK_BYTES = env.int("MYOLABEL_MAX_CHUNK_BYTES", default=64 * 2**20)
# Zip archives: total size once extracted, per-member compression ratio, number of entries.
MYOLABEL_MAX_EXTRACTED_BYTES = env.int("MYOLABEL_MAX_EXTRACTED_BYTES", default=8 * 2**30)
MYOLABEL_MAX_ZIP_RATIO = env.float("MYOLABEL_MAX_ZIP_RATIO", default=250.0)
MYOLABEL_MAX_ZIP_MEMBERS = env.int("MYOLABEL_MAX_ZIP_MEMBERS", default=100_000)
# A model checkpoint uploaded into a project (POST .../models/import/): read whole into memory to
# validate it; the paper profile's weights are about 30 MB.
MYOLABEL_MAX_CHECKPOINT_BYTES = env.int("MYOLABEL_MAX_CHECKPOINT_BYTES", default=256 * 2**20)
# The atrophy and fat report (backend.acquisition.outputs.report): voxels in this HU range (inclusive)
# count as intramuscular fat; a request may set its own (fat_min, fat_max).
MYOLABEL_FAT_HU_MIN = env.float("MYOLABEL_FAT_HU_MIN", default=-190.0)
MYOLABEL_FAT_HU_MAX = env.float("MYOLABEL_FAT_HU_MAX", default=-30.0)
if not MYOLABEL_FAT_HU_MIN < MYOLABEL_FAT_HU_MAX:
    raise ImproperlyConfigured(f"MYOLABEL_FAT_HU_MIN ({MYOLABEL_FAT_HU_MIN}) must be below MYOLABEL_FAT_HU_MAX "
                               f"({MYOLABEL_FAT_HU_MAX})")
# Uploaded files wait here until their import ends; web and cpu workers must share it.
# A chunked upload with no chunk for this long is failed and its bytes deleted.
MYOLABEL_UPLOAD_IDLE_HOURS = env.float("MYOLABEL_UPLOAD_IDLE_HOURS", default=24.0)
MYOLABEL_STAGING_DIR = Path(env.str("MYOLABEL_STAGING_DIR", default=str(DATA_DIR / "staging")))
# Bytes one user's unfinished uploads may announce together (GiB), and the free space the
# staging and media disks keep beyond everything announced (GiB): see services_uploads.
MYOLABEL_UPLOAD_QUOTA_GB = env.float("MYOLABEL_UPLOAD_QUOTA_GB", default=20.0)
MYOLABEL_DISK_MARGIN_GB = env.float("MYOLABEL_DISK_MARGIN_GB", default=2.0)
# PACS (DICOMweb archives, docs/pacs.md): archive passwords are stored encrypted with this key
# (any string; empty: a key derived from SECRET_KEY, so changing SECRET_KEY then needs the
# passwords entered again), and every request to an archive gives up after this many seconds.
MYOLABEL_PACS_KEY = env.str("MYOLABEL_PACS_KEY", default="")
MYOLABEL_PACS_TIMEOUT = env.float("MYOLABEL_PACS_TIMEOUT", default=30.0)
