"""The pipeline: plan, retrieve, query, write, check, save."""
