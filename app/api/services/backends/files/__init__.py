"""The default backend: run state in output/<run_id>/api_state.json, runs in this process's
threads, events in output/<run_id>/events.jsonl published on an in-process bus."""
