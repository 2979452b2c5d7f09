"""The two backends, side by side; neither imports the other.

``files/``: one machine (state files under output/, a thread pool, an in-process bus).
``redis/``: beyond one machine (state and events in Redis, runs on Celery workers).
Both meet the interfaces of run_store.py (Store), run_executor.py (Executor) and
run_stream.py (Stream); app/api/main.py assembles one of them at start-up.
"""
