"""Answer service: cited answers about a folder of documents, as long-running runs."""

__version__ = "0.1.0"
