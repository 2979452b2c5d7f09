"""The HTTP API: create_app() in app.api.main."""
