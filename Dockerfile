# syntax=docker/dockerfile:1
#
# The answer service (FastAPI + uvicorn), offline by default: BM25 retrieval and the
# extractive writer need no key and no model.
#
#   docker build -t answer-service .
#   docker run --rm -p 8000:8000 -v answer-output:/srv/output answer-service
#   # -> http://127.0.0.1:8000/demo/, /docs, /healthz, /readyz
#
# The bundled documents are baked in at /srv/documents. To answer from your own folder,
# mount it over them; read-only is enough (the search index lives in /srv/output/.index):
#   docker run --rm -p 8000:8000 -v ./mydocs:/srv/documents:ro answer-service
#
# A model: -e OPENAI_API_KEY=... [-e APP_LLM_MODEL=gpt-4o-mini], or any OpenAI-compatible
# server: -e APP_LLM_BASE_URL=http://host.docker.internal:11434/v1 -e APP_LLM_MODEL=llama3.1
# More processes (they share /srv/output): append the whole command, e.g.
#   docker run ... answer-service python -m app serve --host 0.0.0.0 --port 8000 --workers 2
# Every APP_* variable of app/config.py (see README.md, "Configuration") can be set with -e.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_BASE_DIR=/srv \
    APP_OUTPUT_DIR=/srv/output

WORKDIR /srv

# The package and its dependencies (all of them ship wheels: no compiler needed), with the
# redis extra, so that one image is an API node or a Celery worker (compose.scale.yaml).
# setuptools leaves build/ and *.egg-info in the source folder; they are not needed.
COPY pyproject.toml README.md ./
COPY app/ app/
RUN pip install --no-cache-dir "./[redis]" \
    && rm -rf build ./*.egg-info

# A fixed, unprivileged user. It writes only /srv/output (runs and the search index); a
# named volume takes this folder's owner, a bind mount must be writable by uid 10001.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-log-init --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app \
    && mkdir -p /srv/output \
    && chown app:app /srv/output

# Read-only for the service; mount a folder over /srv/documents to replace them.
COPY documents/ documents/
# The demo page, served at /demo/: app/api/main.py looks for web-demo/ beside app/, and
# `python -m app` from /srv imports /srv/app (the working directory comes first on sys.path).
COPY web-demo/ web-demo/

VOLUME ["/srv/output"]

USER 10001:10001

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]

CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
