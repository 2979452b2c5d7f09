"""APP_BACKEND=redis: run state and events in Redis, runs on Celery workers (app/worker.py),
artifacts on a shared output/ (README, "Beyond one machine")."""
