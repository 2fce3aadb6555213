import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Lipa: the gateway, the API key and its webhook secret (both printed by `lipa keys create`),
# and this app's own public URL (Lipa posts webhooks to APP_URL/lipa/webhook).
LIPA_URL = os.environ.get("LIPA_URL", "http://127.0.0.1:8080")
LIPA_API_KEY = os.environ.get("LIPA_API_KEY", "")
LIPA_WEBHOOK_SECRET = os.environ.get("LIPA_WEBHOOK_SECRET", "")
APP_URL = os.environ.get("APP_URL", "http://127.0.0.1:8000")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", *filter(None, os.environ.get("ALLOWED_HOSTS", "").split(","))]
INSTALLED_APPS = ["paywall"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"  # the reader's name, no table
ROOT_URLCONF = "paywall.urls"
STATIC_URL = "static/"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        # Webhooks and page views write at once: take the write lock up front and wait for it.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        # A file, not memory: the live test server answers on several threads.
        "TEST": {"NAME": BASE_DIR / "test-db.sqlite3"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
