# configsync: one image for a node's web process (gunicorn, the default command) and its Celery
# worker (compose.yaml overrides the command). Built on your side: `docker build -t configsync .`
# or `docker compose build` (compose.yaml). Production settings; every secret comes from the
# environment at run time, none is baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=settings.production \
    CONFIGSYNC_VAR_DIR=/app/var \
    PORT=8000

WORKDIR /app

# A user of its own: the processes never run as root.
RUN groupadd --system --gid 10001 configsync \
    && useradd --system --uid 10001 --gid configsync --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin configsync

# The project and its dependencies. PYTHONPATH makes the copy in /app (templates included) the
# one every process imports; the installed one adds the `configsync` command.
COPY pyproject.toml README.md ./
COPY configsync ./configsync
COPY providers ./providers
COPY settings ./settings
COPY manage.py gunicorn.conf.py ./
RUN pip install . \
    && mkdir -p /app/var \
    && chown configsync:configsync /app/var

USER configsync

# The static files (the admin's, the API docs'), collected once into the image under hashed
# names; WhiteNoise serves them from gunicorn. Throwaway values: collectstatic reads no secret
# and touches no database, but production settings refuse to load without them.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-a-secret \
    DJANGO_ALLOWED_HOSTS=localhost \
    CONFIGSYNC_ENCRYPTION_KEYS="$(python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode())')" \
    python manage.py collectstatic --noinput

EXPOSE 8000

# The plain health check (database, cache, broker): `?strict=1` also fails while the worker is
# down, and restarting the web process would not bring it back. The Host header is the first of
# DJANGO_ALLOWED_HOSTS, so the request passes Django's host check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; h = os.environ.get('DJANGO_ALLOWED_HOSTS', 'localhost').split(',')[0].strip().lstrip('.*') or 'localhost'; r.urlopen(r.Request('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/api/v1/health', headers={'Host': h}), timeout=4)"]

# gunicorn reads gunicorn.conf.py from the working directory (the settings load once, in the
# master); it binds 0.0.0.0:$PORT.
CMD ["gunicorn", "settings.wsgi"]
