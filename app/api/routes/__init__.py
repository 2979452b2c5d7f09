"""Thin handlers: validate, call one service, shape the response."""
