"""The Celery worker of APP_EXECUTOR=celery: ``celery -A app.worker worker``.

It reads the same APP_* environment as the API nodes (APP_REDIS_URL, APP_REDIS_PREFIX,
APP_OUTPUT_DIR on the shared volume, the engine's settings) and runs the runs they queue.
"""

from __future__ import annotations

from app.api.services.backends.redis.executor import make_celery, register_worker_task
from app.config import AppConfig

config = AppConfig()
celery = make_celery(config)
register_worker_task(celery, config)
