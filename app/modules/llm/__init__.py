"""Answer writers: the offline extractive one and any OpenAI-compatible chat model."""
