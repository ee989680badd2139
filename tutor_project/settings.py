"""Settings for AI Professor: one file, driven by environment variables.

With no variables set this is the *embedded default*: a SQLite file, the in-memory channel layer,
Celery tasks run in-process, offline providers. Setting `DATABASE_URL`, `REDIS_URL` and the
provider keys turns the same code into the production-like deployment (see README.md).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env file is read when present (never committed); real env vars win over it.
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Core ----------------------------------------------------------------------------------

# The development key is public on purpose; the `tutor.E001` system check refuses it when
# DEBUG is off, so a production deployment cannot start with it.
DEV_SECRET_KEY = "dev-insecure-ai-professor-key-change-me-in-production-0123456789"
DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=DEV_SECRET_KEY)
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"]
)
# Origins allowed to POST forms and open WebSockets from another scheme/port (https://x.example).
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",  # first, so `runserver` is the ASGI server too
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework_simplejwt",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files, no CDN
    "django_htmx",
    "django_celery_beat",
    "axes",
    # ours; `courses` depends on none of the others
    "courses.apps.CoursesConfig",
    "sessions.apps.SessionsConfig",  # label "live_sessions"
    "voice.apps.VoiceConfig",
    "analytics.apps.AnalyticsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # a selector's NotFound/Forbidden in a portal view becomes the 404/403 page
    "courses.middleware.DomainErrorMiddleware",
    # last, as django-axes asks: it turns a lockout into the portal's 429 page
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tutor_project.urls"
ASGI_APPLICATION = "tutor_project.asgi.application"
WSGI_APPLICATION = None  # served by Daphne (ASGI) only

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

AUTH_USER_MODEL = "courses.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Database ------------------------------------------------------------------------------

# SQLite file by default; PostgreSQL (psycopg 3) with DATABASE_URL=postgres://user:pw@host/db.
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run while a writer commits; IMMEDIATE avoids "database is locked" on
    # upgrade from read to write under Daphne's thread pool.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # Tests use a file too, not Django's in-memory database: its shared-cache mode fails a
    # concurrent writer at once ("database table is locked") where a file waits `timeout`, so
    # tests with a live server and a background ingestion would see errors production never has.
    DATABASES["default"].setdefault("TEST", {}).setdefault("NAME", str(BASE_DIR / "db.sqlite3.test"))
# Connections are reused (SQLite too: opening one per call, and the WAL checkpoint when the last
# one closes, cost a typed line in a room several milliseconds; bench/fanout.py).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USING_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"

# --- Redis: channel layer, cache, Celery broker --------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    # The pub/sub layer: the default RedisChannelLayer drops group messages once a channel's
    # capacity (100) overflows; pub/sub delivered everything at lower latency (DESIGN.md).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "aiprof",
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery --------------------------------------------------------------------------------

# Broker: CELERY_BROKER_URL (e.g. amqp://guest:guest@127.0.0.1:5672//) or else REDIS_URL.
# With neither, tasks run in-process (eager): the embedded default needs no worker.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None  # results are written to the database by the tasks themselves
CELERY_TASK_ACKS_LATE = True  # a task is acknowledged after it ran: a crashed worker retries it
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # with acks_late, do not hoard tasks in one worker
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=15 * 60)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Auth and throttling -------------------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    # first: refuses a locked-out username/IP before any password is checked
    "axes.backends.AxesStandaloneBackend",
    "courses.backends.TenantAwareModelBackend",  # ModelBackend + the tenant must be active
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Brute-force protection for the portal login and the token endpoint alike.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no banner on every manage.py command
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_USERNAME_FORM_FIELD = "username"
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler" if REDIS_URL else "axes.handlers.database.AxesDatabaseHandler"
# Behind a proxy, set DJANGO_TRUST_X_FORWARDED_FOR=1 so the client IP is the forwarded one.
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
    if env.bool("DJANGO_TRUST_X_FORWARDED_FOR", default=False)
    else ["REMOTE_ADDR"]
)

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=5)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=1)),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": True,
    "SIGNING_KEY": SECRET_KEY,
}

# --- REST API ------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "courses.api.pagination.DefaultPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "courses.api.errors.api_exception_handler",
    # Our JSON parser turns a pathologically nested body into a 400 instead of a RecursionError.
    "DEFAULT_PARSER_CLASSES": [
        "courses.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_THROTTLE_RATES": {"anon": "60/min", "user": "600/min"},
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AI Professor API",
    "DESCRIPTION": "REST API for mobile and desktop clients. WebSocket protocol: docs/protocol.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Choice sets used by several serializers get one schema name each.
    "ENUM_NAME_OVERRIDES": {
        "PracticeModeEnum": "sessions.services.PRACTICE_MODE_CHOICES",
        "TeachingModeEnum": "courses.models.TeachingMode",
    },
}

# --- Real-time (WebSocket) limits ----------------------------------------------------------

# A join ticket (native clients) is valid this many seconds, once.
WS_TICKET_TTL_SECONDS = env.int("WS_TICKET_TTL_SECONDS", default=60)
WS_MAX_TEXT_FRAME_BYTES = env.int("WS_MAX_TEXT_FRAME_BYTES", default=16 * 1024)
# 40 ms of PCM16 mono 16 kHz is 1,280 bytes; a frame may carry up to 250 ms.
WS_MAX_BINARY_FRAME_BYTES = env.int("WS_MAX_BINARY_FRAME_BYTES", default=8 * 1024)
WS_MAX_MESSAGES_PER_SECOND = env.int("WS_MAX_MESSAGES_PER_SECOND", default=10)
WS_MESSAGE_BURST = env.int("WS_MESSAGE_BURST", default=20)
WS_MAX_AUDIO_SECONDS_PER_MINUTE = env.int("WS_MAX_AUDIO_SECONDS_PER_MINUTE", default=70)
# After this many limit violations a connection is closed with 4429.
WS_VIOLATIONS_BEFORE_CLOSE = env.int("WS_VIOLATIONS_BEFORE_CLOSE", default=3)

# --- Providers (keys empty = offline engines, see DESIGN.md "Providers") -------------------

OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")  # OpenAI, Groq, Ollama, vLLM...
OPENAI_TRANSCRIBE_MODEL = env.str("OPENAI_TRANSCRIBE_MODEL", default="gpt-4o-mini-transcribe")
OPENAI_TTS_MODEL = env.str("OPENAI_TTS_MODEL", default="gpt-4o-mini-tts")
DEEPGRAM_API_KEY = env.str("DEEPGRAM_API_KEY", default="")

# --- Voice input (voice/vad.py, voice/pipeline.py) ------------------------------------------

# The ASGI server's thread switch interval in ms (sys.setswitchinterval); 0 = Python's 5 ms.
# 0.5 keeps audio frames from queueing behind the offline STT pool's threads (tutor_project/asgi.py).
PYTHON_SWITCH_INTERVAL_MS = env.float("PYTHON_SWITCH_INTERVAL_MS", default=0.0)

# Silence (ms) after speech that ends a turn: the utterance is finished and transcribed.
VOICE_END_OF_TURN_MS = env.int("VOICE_END_OF_TURN_MS", default=700)
# Voiced speech (ms) in one utterance before it counts as a barge-in candidate (on_speech).
VOICE_BARGE_IN_MS = env.int("VOICE_BARGE_IN_MS", default=600)
# webrtcvad aggressiveness, 0 (keeps most audio as speech) to 3 (most eager to call it noise).
VOICE_VAD_AGGRESSIVENESS = env.int("VOICE_VAD_AGGRESSIVENESS", default=2)
# Confirm each utterance with Silero VAD and drop what it rates as non-speech (clicks, noise).
VOICE_VAD_CONFIRM = env.bool("VOICE_VAD_CONFIRM", default=False)
# Pocketsphinx decodes and reports a partial transcript at most this often (ms of audio).
VOICE_PARTIAL_INTERVAL_MS = env.int("VOICE_PARTIAL_INTERVAL_MS", default=300)
# Pocketsphinx decoders kept per process (each holds its acoustic model, ~tens of MB).
VOICE_POCKETSPHINX_DECODERS = env.int("VOICE_POCKETSPHINX_DECODERS", default=4)

# --- Cloud speech (voice/providers/deepgram.py, voice/providers/openai_audio.py) -------------
# Deepgram live model; nova-3 takes `keyterm` boosts, older models `keywords`.
DEEPGRAM_MODEL = env.str("DEEPGRAM_MODEL", default="nova-3")
# WebSocket host, e.g. "wss://api.deepgram.com" (empty = Deepgram's); tests point it at a stand-in.
DEEPGRAM_BASE_URL = env.str("DEEPGRAM_BASE_URL", default="")
# Silence (ms) after which Deepgram ends a segment with speech_final.
DEEPGRAM_ENDPOINTING_MS = env.int("DEEPGRAM_ENDPOINTING_MS", default=300)
# Seconds without audio before a KeepAlive is sent (Deepgram closes idle streams after 10 s).
DEEPGRAM_KEEPALIVE_SECONDS = env.float("DEEPGRAM_KEEPALIVE_SECONDS", default=5.0)
# Longest wait for the WebSocket upgrade; past it the chain falls back.
DEEPGRAM_CONNECT_TIMEOUT_SECONDS = env.float("DEEPGRAM_CONNECT_TIMEOUT_SECONDS", default=5.0)
# Longest wait after Finalize for the utterance's last final result.
DEEPGRAM_FINALIZE_TIMEOUT_SECONDS = env.float("DEEPGRAM_FINALIZE_TIMEOUT_SECONDS", default=3.0)
# USD per minute of audio streamed (UsageEvent.cost).
DEEPGRAM_COST_PER_MINUTE = env.float("DEEPGRAM_COST_PER_MINUTE", default=0.0077)
# Longest OpenAI transcription or speech request (connect + whole answer), seconds.
OPENAI_AUDIO_TIMEOUT_SECONDS = env.float("OPENAI_AUDIO_TIMEOUT_SECONDS", default=15.0)
# USD per minute of audio transcribed by OPENAI_TRANSCRIBE_MODEL.
OPENAI_TRANSCRIBE_COST_PER_MINUTE = env.float("OPENAI_TRANSCRIBE_COST_PER_MINUTE", default=0.003)
# USD per 1000 characters spoken by OPENAI_TTS_MODEL.
OPENAI_TTS_COST_PER_1K_CHARS = env.float("OPENAI_TTS_COST_PER_1K_CHARS", default=0.015)
# OpenAI voice when the persona names none (AvatarPersona.voice_openai).
OPENAI_TTS_VOICE = env.str("OPENAI_TTS_VOICE", default="alloy")

# --- Tutor: the LLM chain's policy (sessions/tutor/chain.py) --------------------------------

# Seconds to open a connection to a provider, to wait for the next streamed chunk (the first one
# included), and for a whole reply. Past any of them the attempt is a transient failure.
LLM_CONNECT_TIMEOUT_SECONDS = env.float("LLM_CONNECT_TIMEOUT_SECONDS", default=5.0)
LLM_READ_TIMEOUT_SECONDS = env.float("LLM_READ_TIMEOUT_SECONDS", default=20.0)
LLM_TOTAL_TIMEOUT_SECONDS = env.float("LLM_TOTAL_TIMEOUT_SECONDS", default=60.0)
# Retries of one model on a transient error (429, 5xx, timeout, connection) before the next model;
# the SDK's own retries are off. Delay before retry n: uniform(0, min(max, base * 2**n)), or the
# provider's Retry-After when it is shorter than the max.
LLM_RETRIES_PER_MODEL = env.int("LLM_RETRIES_PER_MODEL", default=1)
LLM_BACKOFF_BASE_SECONDS = env.float("LLM_BACKOFF_BASE_SECONDS", default=0.25)
LLM_BACKOFF_MAX_SECONDS = env.float("LLM_BACKOFF_MAX_SECONDS", default=2.0)
# Circuit breaker per model, shared by every process through the cache: it opens after
# FAILURES transient failures within WINDOW seconds, and lets one trial call through (half-open)
# after COOLDOWN seconds; a success closes it.
LLM_BREAKER_FAILURES = env.int("LLM_BREAKER_FAILURES", default=5)
LLM_BREAKER_WINDOW_SECONDS = env.int("LLM_BREAKER_WINDOW_SECONDS", default=60)
LLM_BREAKER_COOLDOWN_SECONDS = env.int("LLM_BREAKER_COOLDOWN_SECONDS", default=30)

# --- Tutor: dialogue ------------------------------------------------------------------------

# A student's message is at most this many characters (longer ones get an `error`, not a cut).
TUTOR_MAX_MESSAGE_CHARS = env.int("TUTOR_MAX_MESSAGE_CHARS", default=4000)
# The conversation history in a prompt: at most this many recent messages within this many
# tokens (estimated at 4 characters a token), newest kept first.
TUTOR_HISTORY_MESSAGES = env.int("TUTOR_HISTORY_MESSAGES", default=12)
TUTOR_HISTORY_TOKEN_BUDGET = env.int("TUTOR_HISTORY_TOKEN_BUDGET", default=1500)
# Questions a student may ask the tutor a minute (each may cost a model call); 0: no limit.
TUTOR_TURNS_PER_MINUTE = env.int("TUTOR_TURNS_PER_MINUTE", default=20)
# Passages of course material retrieved for each question.
TUTOR_PASSAGES = env.int("TUTOR_PASSAGES", default=4)
# Messages of context the guardrail's LLM tier sees, and how long it may take before the
# message is let through (a slow guardrail must not block the tutor).
GUARDRAIL_HISTORY_MESSAGES = env.int("GUARDRAIL_HISTORY_MESSAGES", default=4)
GUARDRAIL_LLM_TIMEOUT_SECONDS = env.float("GUARDRAIL_LLM_TIMEOUT_SECONDS", default=5.0)

# --- Live sessions (sessions/orchestration.py, sessions/live.py, sessions/tutor/room_tutor.py) ---

# Starts one room's tutor (a soft failure raises); a dotted path so an avatar provider can plug in.
ROOM_TUTOR_STARTER = env.str("ROOM_TUTOR_STARTER", default="sessions.orchestration.room_tutor_start")
ROOM_TUTOR_START_WORKERS = env.int("ROOM_TUTOR_START_WORKERS", default=8)
# The room tutor waits this long after a student's line for others to add theirs, then answers
# everything said since its last reply in one turn (a group is not a queue of questions).
ROOM_TUTOR_DEBOUNCE_MS = env.int("ROOM_TUTOR_DEBOUNCE_MS", default=1200)
# A student who said fewer than this many of the room's lines is "quiet": the tutor invites them in.
ROOM_QUIET_SHARE = env.float("ROOM_QUIET_SHARE", default=0.15)
# A live session with no activity for this long is ended by the beat task (sessions.tasks).
SESSION_IDLE_END_MINUTES = env.int("SESSION_IDLE_END_MINUTES", default=90)
# Lines per room the monitor page renders (the socket adds the rest live).
MONITOR_LINES_PER_ROOM = env.int("MONITOR_LINES_PER_ROOM", default=8)

# --- Files, static, i18n -------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("DJANGO_MEDIA_ROOT", default=str(BASE_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# In DEBUG WhiteNoise serves straight from the app folders, no collectstatic needed.
WHITENOISE_USE_FINDERS = DEBUG
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=25 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Security (production values switch on when DEBUG is off) ------------------------------

SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if env.bool("DJANGO_BEHIND_TLS_PROXY", default=False):
    # The proxy terminates TLS and says so in this header; trust it only behind such a proxy.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Logging -------------------------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# --- Course materials (issue 6) -----------------------------------------------------------

# Uploads: MAX_UPLOAD_BYTES (above) is the largest file; these are the formats we can read.
DOCUMENT_EXTENSIONS = [".pdf", ".md", ".markdown", ".txt", ".docx", ".pptx"]
# Ingestion runs as a Celery task. Without a broker (eager Celery) it runs in a background thread
# of the web process instead of inside the upload request, so the portal shows its progress;
# tests switch the thread off to run it in line.
DOCUMENT_INGEST_IN_THREAD = env.bool("DOCUMENT_INGEST_IN_THREAD", default=CELERY_TASK_ALWAYS_EAGER)
# Semantic search: "openai" (OpenAI-compatible /embeddings), "minilm" (offline, optional extra:
# requirements/embeddings-local.txt) or "" for lexical retrieval only. Vectors are stored with
# pgvector, so semantic (and hybrid) search needs PostgreSQL with the extension.
EMBEDDINGS_ENGINE = env.str("EMBEDDINGS_ENGINE", default="")
EMBEDDINGS_MODEL = env.str("EMBEDDINGS_MODEL", default="text-embedding-3-small")
EMBEDDINGS_BASE_URL = env.str("EMBEDDINGS_BASE_URL", default=OPENAI_BASE_URL)
EMBEDDINGS_API_KEY = env.str("EMBEDDINGS_API_KEY", default=OPENAI_API_KEY)
EMBEDDINGS_TIMEOUT_SECONDS = env.float("EMBEDDINGS_TIMEOUT_SECONDS", default=10.0)
# Semantic hits less similar than this (cosine) are dropped: nearest is not always relevant.
EMBEDDINGS_MIN_SIMILARITY = env.float("EMBEDDINGS_MIN_SIMILARITY", default=0.2)
# The documents API's `status` choices get one schema name (another `status` enum exists).
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["DocumentStatusEnum"] = "courses.models.CourseDocument.Status"

# --- Voice in live rooms, practice and the lecture (voice/live.py) --------------------------

# Barge-in: VOICE_BARGE_IN_MS (above) of voiced audio over a speaking tutor, then words that are
# not a backchannel ("mhm", "ok"), interrupt it.
# `transcript.partial` events per second and speaker at most (finals always go out).
VOICE_PARTIALS_PER_SECOND = env.float("VOICE_PARTIALS_PER_SECOND", default=5.0)
# Lecture lines (the professor's, main room) a room tutor reads into its prompt.
LECTURE_LINES = env.int("LECTURE_LINES", default=6)

# --- Audio storage (utterance WAVs when a tenant keeps audio) ---------------------------------

# Default storage: files under MEDIA_ROOT; with a bucket, any S3-compatible store (django-storages).
AUDIO_STORAGE_BUCKET = env.str("AUDIO_STORAGE_BUCKET", default="")
AUDIO_STORAGE_ENDPOINT_URL = env.str("AUDIO_STORAGE_ENDPOINT_URL", default="")
AUDIO_STORAGE_ACCESS_KEY = env.str("AUDIO_STORAGE_ACCESS_KEY", default="")
AUDIO_STORAGE_SECRET_KEY = env.str("AUDIO_STORAGE_SECRET_KEY", default="")
AUDIO_STORAGE_REGION = env.str("AUDIO_STORAGE_REGION", default="")
if AUDIO_STORAGE_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AUDIO_STORAGE_BUCKET,
            "endpoint_url": AUDIO_STORAGE_ENDPOINT_URL or None,
            "access_key": AUDIO_STORAGE_ACCESS_KEY or None,
            "secret_key": AUDIO_STORAGE_SECRET_KEY or None,
            "region_name": AUDIO_STORAGE_REGION or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }

# --- Analytics (analytics/metrics.py) -----------------------------------------------------

# A student addressed by a tutor question who stays silent this long while others speak: a
# silence_after_question confusion point.
ANALYTICS_SILENCE_SECONDS = env.float("ANALYTICS_SILENCE_SECONDS", default=60.0)
# (repeated_question uses the live radar's ANALYTICS_REPEAT_WITHIN_LINES, default 8.)
# Final runs with an online model: at most this many student lines are sent for the model to
# classify (topic, confusion; analytics/refine.py), 60 a call; 0 turns the refinement off.
ANALYTICS_REFINE_MAX_LINES = env.int("ANALYTICS_REFINE_MAX_LINES", default=600)

# --- Tests ---------------------------------------------------------------------------------

# REQUIRE_SERVICES=1 (set by .ci/run) turns "service not configured" skips into failures.
REQUIRE_SERVICES = env.bool("REQUIRE_SERVICES", default=False)

# --- Live analytics: the confusion radar (issue 7) -----------------------------------------

# Confusion signals count on the monitor's radar for this long (a sliding window).
ANALYTICS_RADAR_WINDOW_MINUTES = env.int("ANALYTICS_RADAR_WINDOW_MINUTES", default=15)
# At most one `analytics.update` per session this often (the last change is always sent).
ANALYTICS_RADAR_DEBOUNCE_SECONDS = env.float("ANALYTICS_RADAR_DEBOUNCE_SECONDS", default=2.0)
# Every this many student lines the session's participation is recomputed (final=False).
ANALYTICS_LIVE_EVERY_LINES = env.int("ANALYTICS_LIVE_EVERY_LINES", default=20)
# Without a broker that recomputation runs on a background thread of the process (not in the
# consumers' shared database thread); tests switch it off to run it in line.
ANALYTICS_LIVE_COMPUTE_IN_THREAD = env.bool("ANALYTICS_LIVE_COMPUTE_IN_THREAD", default=CELERY_TASK_ALWAYS_EAGER)
# A question counts as repeated when the same student asked on the same topic within this many
# earlier lines of the room.
ANALYTICS_REPEAT_WITHIN_LINES = env.int("ANALYTICS_REPEAT_WITHIN_LINES", default=8)

# --- Usage, retention, data rights (issue 7; an-ops) --------------------------------------

# Budget alerts go to tenant staff by e-mail; printed to the console unless configured.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="ai-professor@localhost")
# Rows the retention purge deletes per statement (memory stays constant however much expired).
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=500)

# --- Voice output (voice/tts.py, voice/speech.py) -------------------------------------------

# Who speaks the tutor's replies: "auto" (OpenAI speech if OPENAI_API_KEY, then piper, then
# espeak-ng), "server" (piper, then espeak-ng: nothing leaves the server), "browser" (the client's
# speechSynthesis reads the text) or "off". Except "off", the browser is the last resort when every
# server engine fails.
VOICE_TTS = env.str("VOICE_TTS", default="auto")
