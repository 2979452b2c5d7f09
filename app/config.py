"""The one configuration object: environment variables with the ``APP_`` prefix (README)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LLMProviderName = Literal["auto", "extractive", "openai"]
BackendName = Literal["files", "redis"]
ExecutorName = Literal["threads", "celery"]


def _split_commas(value: object) -> object:
    # Comma lists in the environment ("a,b") are friendlier than JSON arrays for operators.
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class AppConfig(BaseSettings):
    """Paths, limits and engine settings for one process (server, CLI or test)."""

    model_config = SettingsConfigDict(
        env_prefix="APP_",
        extra="ignore",
        validate_default=True,
    )

    # --- paths (relative ones resolve against base_dir) ---
    base_dir: Path = Field(default_factory=Path.cwd)
    # One folder of documents, anywhere (`serve --docs PATH`): the only root, and the
    # default every run reads. Runs name it by its folder name, so payloads stay relative.
    docs: str | None = None
    documents_roots: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["documents"])
    output_dir: Path = Path("output")
    index_dir: Path | None = None  # default: <output_dir>/.index

    # --- per-run options (the API's request body overrides these) ---
    markdown_path: str = "documents"
    enable_sql: bool = False
    log_llm_payload: bool = False

    # --- executor limits ---
    max_workers: int = Field(default=2, ge=1, le=64)
    max_queued: int = Field(default=100, ge=0)
    run_timeout_s: float = Field(default=600.0, gt=0)

    # --- answer engine ---
    llm_provider: LLMProviderName = "auto"
    llm_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("APP_LLM_API_KEY", "OPENAI_API_KEY")
    )
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_temperature: float = Field(default=0.1, ge=0, le=2)
    llm_max_tokens: int = Field(default=1200, ge=16)
    top_k: int = Field(default=8, ge=1, le=50)
    chunk_max_chars: int = Field(default=1800, ge=200)
    chunk_overlap_chars: int = Field(default=200, ge=0)
    sql_row_cap: int = Field(default=200, ge=1)
    sql_timeout_s: float = Field(default=2.0, gt=0)
    pipeline: str | None = None

    # --- scale-out (README "Beyond one machine"): run state, events and execution ---
    # files + threads: one machine, nothing else to run. redis + celery: run state and
    # events in Redis, runs on Celery workers, artifacts on a shared output/.
    backend: BackendName = "files"
    executor: ExecutorName = "threads"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Every Redis key (and the Celery queue) starts with this: several deployments, or
    # test runs, can share one Redis.
    redis_prefix: str = Field(default="answer", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    # A Celery worker refreshes a running run's heartbeat this often; a run whose heartbeat
    # is 3 intervals old is recorded failed/interrupted by the sweeper on the API nodes.
    heartbeat_s: float = Field(default=5.0, gt=0)
    # Where API nodes send runs to Celery workers; unset: the Redis of APP_REDIS_URL. An
    # amqp:// URL uses RabbitMQ (recommended in production: real acknowledgements, a
    # durable quorum queue, publisher confirms). Run state and events stay in Redis.
    broker_url: str | None = None
    # A queued run is sent to the workers again when it has waited at least this long
    # (unset: 3 heartbeats) and the queue shows its message is gone: a run queued after it
    # has started, or no run is running at all. README "When a worker or the broker fails".
    requeue_after_s: float | None = Field(default=None, gt=0)

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def requeue_grace_s(self) -> float:
        return self.requeue_after_s or 3 * self.heartbeat_s

    # --- HTTP layer ---
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    sse_ping_s: float = Field(default=15.0, gt=0)
    # Event streams open at once in this process; one more gets 503 with Retry-After.
    max_sse_streams: int = Field(default=1000, ge=1)
    watch_force_polling: bool = False

    # --- operations ---
    # Terminal runs whose completed_at is older than this are removed (None: keep forever).
    retention_days: float | None = Field(default=None, gt=0)
    retention_interval_s: float = Field(default=3600.0, gt=0)
    # One JSON object per log line (for log shippers) instead of the human format.
    log_json: bool = False

    _split = field_validator("documents_roots", "api_keys", "cors_origins", mode="before")(
        _split_commas
    )

    @model_validator(mode="after")
    def _backend_pairs(self) -> AppConfig:
        # Runs in Redis need workers that read Redis, and Celery workers report to Redis:
        # any other pairing would leave runs that no process can see or finish.
        if (self.backend == "redis") != (self.executor == "celery"):
            raise ValueError(
                "APP_BACKEND=redis goes with APP_EXECUTOR=celery, and files with threads "
                f"(got backend={self.backend!r}, executor={self.executor!r})"
            )
        return self

    @model_validator(mode="after")
    def _one_docs_folder(self) -> AppConfig:
        if self.docs:
            # Absolute, so "../handbook" or "." name the folder itself.
            self.documents_roots = [str(self.resolve(self.docs).resolve())]
            self.markdown_path = next(iter(self.root_paths()))
        elif "markdown_path" not in self.model_fields_set:
            # Roots set without a default path: read the first root, not a "documents"
            # folder that is not allowed.
            names = list(self.root_paths())
            if names and self.markdown_path not in names:
                self.markdown_path = names[0]
        return self

    @field_validator("base_dir", mode="after")
    @classmethod
    def _absolute_base(cls, value: Path) -> Path:
        return value.resolve()

    def resolve(self, path: str | Path) -> Path:
        """An absolute path for ``path``, taken relative to the base directory."""
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def root_paths(self) -> dict[str, Path]:
        """Each documents root by the name runs use for it: a relative root by its path
        ("documents"), an absolute one by its folder name ("/srv/handbook" -> "handbook")."""
        named: dict[str, Path] = {}
        for root in self.documents_roots:
            path = PurePosixPath(root)
            if not path.is_absolute():
                named[path.as_posix()] = self.base_dir / path
                continue
            name, n = path.name or "documents", 2
            while name in named:
                name, n = f"{path.name}-{n}", n + 1
            named[name] = Path(root)
        return named

    def documents_path(self, markdown_path: str | None = None) -> Path:
        """The folder a run reads: ``markdown_path`` (default: this config's), where a
        leading root name stands for that root's folder."""
        wanted = PurePosixPath(markdown_path or self.markdown_path)
        if wanted.is_absolute():
            return Path(wanted)
        roots = sorted(self.root_paths().items(), key=lambda item: -len(item[0]))
        for name, path in roots:
            head = PurePosixPath(name).parts
            if wanted.parts[: len(head)] == head:
                return path.joinpath(*wanted.parts[len(head) :])
        return self.resolve(wanted.as_posix())

    @property
    def output_root(self) -> Path:
        return self.resolve(self.output_dir)

    @property
    def index_root(self) -> Path:
        return self.resolve(self.index_dir) if self.index_dir else self.output_root / ".index"

    def relative(self, path: Path) -> str:
        """``path`` as payloads show it, never absolute: relative to the base directory, or,
        for an output folder kept outside it, starting at that folder (``output/<id>/final.md``).
        """
        resolved = path.resolve()
        for start in (self.base_dir, self.output_root.resolve().parent):
            if resolved.is_relative_to(start):
                return resolved.relative_to(start).as_posix()
        return path.name

    def effective_provider(self) -> Literal["extractive", "openai"]:
        """``auto`` means the model when one is configured, the offline writer otherwise."""
        if self.llm_provider != "auto":
            return self.llm_provider
        return "openai" if (self.llm_base_url or self.llm_api_key) else "extractive"
