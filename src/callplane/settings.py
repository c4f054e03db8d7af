"""All configuration in one pydantic-settings class (``CALLPLANE_`` prefix, optional TOML file)."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    """Everything callplane reads from its environment, passed in explicitly (never read at import time)."""

    model_config = SettingsConfigDict(env_prefix="CALLPLANE_", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("callplane-data")
    config_file: Path | None = None
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; unset means SQLite in the data directory. "
        "postgresql://... is rewritten to the asyncpg driver.",
    )
    database_pool_size: int = 10
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    admin_token: str | None = Field(default=None, repr=False)
    secret_key: str | None = Field(default=None, repr=False, description="Fernet key for secrets at rest")
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    # Tenancy lookups are cached per process for a few seconds; admin changes made in the same
    # process invalidate at once, other processes see them within this many seconds.
    tenancy_cache_seconds: float = 5.0

    ingestion_api_versions: list[str] = ["2022-03-01"]
    ingestion_country_codes: list[int] = [1, 44, 34]
    batch_max_body_bytes: int = 5 * 1024 * 1024  # the Zipteams document's maximum payload
    # Request bodies (docs/decisions.md "Request bodies"): the limit for every JSON API whose vendor documents none,
    # applied while the body streams in and before it is parsed or authenticated; and how long a body may stall
    # between two reads before the request is answered 408 and the connection closed.
    request_body_max_bytes: int = Field(default=1024 * 1024, ge=1)
    request_body_read_timeout_seconds: float = Field(default=30.0, gt=0)
    batch_rate_limit_per_minute: int = 120

    # Every outbound target (recording fetches, callbacks, webhooks, SIP calls, trunks, REGISTER) must be a public
    # address unless listed here: one allow-list for all (the name predates SIP; docs/decisions.md).
    fetch_allowed_networks: list[str] = []
    fetch_allowed_hosts: list[str] = []
    recording_max_bytes: int = 1024 * 1024 * 1024
    recording_fetch_timeout_seconds: float = 600.0
    # A local folder recordings are dropped into, for calls submitted with recording_filename.
    recording_drop_dir: Path | None = None

    # Where normalized recordings are stored (docs/storage.md): "local" (data_dir/recordings) or an S3-compatible
    # bucket shared by every node and worker. Unset S3 credentials: boto3's chain (AWS_* variables, instance role).
    storage_backend: Literal["local", "s3"] = "local"
    storage_s3_bucket: str | None = None
    storage_s3_prefix: str = ""
    storage_s3_endpoint_url: str | None = None  # MinIO, Ceph, moto ...; unset: AWS
    storage_s3_region: str | None = None
    storage_s3_access_key_id: str | None = None
    storage_s3_secret_access_key: str | None = Field(default=None, repr=False)
    storage_s3_session_token: str | None = Field(default=None, repr=False)
    storage_s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    storage_s3_server_side_encryption: Literal["none", "AES256", "aws:kms"] = "none"
    storage_s3_sse_kms_key_id: str | None = None
    # With S3, GET /calls/{id}/recording answers 307 to a presigned URL valid this long; 0 streams through the API.
    storage_presigned_download_seconds: int = Field(default=300, ge=0, le=7 * 24 * 3600)

    # Post-call processing: `callplane serve` runs these workers in-process unless disabled.
    workers_enabled: bool = True
    worker_concurrency: int = 2
    # The pipeline stages this process's worker runs (serve and `callplane worker`); unset = all of them.
    worker_stages: list[Literal["recording", "transcribe", "finalize"]] | None = None
    worker_poll_seconds: float = 0.5
    job_lease_seconds: float = 60.0
    job_max_attempts: int = 5
    job_backoff_base_seconds: float = 2.0
    job_backoff_cap_seconds: float = 600.0

    # Programmable voice (docs/voice.md): `serve` runs the SIP/media engine in-process when enabled.
    voice_enabled: bool = False
    sip_host: str = "127.0.0.1"  # the address SIP binds to and puts in Via/Contact
    sip_port: int = 5060
    sip_public_host: str | None = None  # what we tell peers to send to, when it differs from sip_host
    rtp_host: str = "127.0.0.1"
    rtp_port_min: int = 20000
    rtp_port_max: int = 30000
    # SO_RCVBUF of the SIP socket (docs/media-engine.md): a burst of CANCELs overflowed the 208 KB default. Linux
    # caps it at net.core.rmem_max unless the process runs as root; 0 keeps the system default.
    sip_receive_buffer_bytes: int = Field(default=4 * 1024 * 1024, ge=0)
    # Retention (docs/voice.md "Retention"): finished calls and dialogs are deleted this many days after they
    # ended (Infobip keeps 5), recording files this many days after they ended; 0 keeps them. Swept every
    # `voice_retention_sweep_seconds` by the workers of `serve`.
    voice_history_retention_days: int = Field(default=5, ge=0)
    voice_recording_retention_days: int = Field(default=90, ge=0)
    voice_retention_sweep_seconds: float = Field(default=3600.0, gt=0)
    # An inbound call the application never answers ends NO_ANSWER (480, source PLATFORM) after this long.
    voice_inbound_answer_timeout_seconds: float = Field(default=120.0, gt=0)
    # Live calls are owned by the node whose engine carries them; on start a node ends its leftovers.
    voice_node_id: str | None = Field(default=None, description="unset: the host name")
    # Scale-out (`serve --role api` + `callplane media`): media nodes beat every few seconds; a node whose last
    # beat is older than `voice_node_dead_after_seconds` gets no new calls and no commands. An API process waits
    # `voice_relay_timeout_seconds` for a node to run a command; nodes poll for commands every
    # `voice_relay_poll_seconds` when a NOTIFY was missed (or on SQLite, which has none).
    voice_node_heartbeat_seconds: float = Field(default=2.0, gt=0)
    voice_node_dead_after_seconds: float = Field(default=10.0, gt=0)
    voice_relay_timeout_seconds: float = Field(default=10.0, gt=0)
    voice_relay_poll_seconds: float = Field(default=0.5, gt=0)
    # Contact center (docs/contact-center.md): how long an agent's and an end user's phone rings, and how often
    # the queues and scheduled calls are looked at when nothing pokes them.
    contact_center_ring_timeout_seconds: int = Field(default=30, ge=1, le=60)
    contact_center_poll_seconds: float = Field(default=1.0, gt=0)

    # Speech-to-text (docs/transcription.md): mapped onto core.transcripts.AsrSettings by app.asr_settings().
    transcription_enabled: bool = True
    # Calls one worker process transcribes at once (each call decodes its channels in parallel threads).
    transcription_concurrency: int = Field(default=1, ge=1)
    asr_model_path: Path | None = Field(default=None, description="a CTranslate2 Whisper directory; unset = base")
    asr_models_dir: Path | None = Field(default=None, description="where the registry model is built; data_dir/models")
    asr_device: Literal["cpu", "cuda", "auto"] = "cpu"
    asr_compute_type: str | None = None  # int8 on CPU, float16 on CUDA
    asr_cpu_threads: int = Field(default=1, ge=1)  # per decode; 1 per channel measured best on small CPUs
    asr_num_workers: int = Field(default=2, ge=1)  # parallel decodes (channel threads) per process
    asr_beam_size: int = Field(default=5, ge=1)
    asr_vad_threshold: float = Field(default=0.2, gt=0, lt=1)  # 0.5 drops 8 kHz turns; 0.3 clips turn starts
    # Both channels' speech packed into Whisper windows this long (one encode for a short call); 0 = per channel.
    asr_pack_window_seconds: float = Field(default=30.0, ge=0, le=30)
    asr_budget_ratio: float = Field(default=1.0, gt=0)  # decode seconds allowed per second of channel audio
    asr_budget_min_seconds: float = Field(default=30.0, gt=0)
    # Example sentences of signal definitions: "minilm" (all-MiniLM-L6-v2), "hashed" (lexical) or "off".
    signals_embedder: Literal["minilm", "hashed", "off"] = "minilm"

    # Outgoing webhooks and batch callbacks (one outbox, one delivery worker).
    delivery_timeout_seconds: float = 10.0
    delivery_backoff_base_seconds: float = 30.0
    delivery_backoff_cap_seconds: float = 6 * 3600.0
    delivery_poll_seconds: float = 1.0
    # How long a claimed delivery stays locked (a crashed worker's claims are re-sent after it); unset: the larger
    # of 60 s and 3 x delivery_timeout_seconds. Must exceed delivery_timeout_seconds.
    delivery_lease_seconds: float | None = Field(default=None, gt=0)
    callback_signing_secret: str | None = Field(default=None, repr=False)

    # Observability (docs/observability.md). /metrics answers a bearer of this token or of the admin token (so a
    # scraper need not hold the admin token); `callplane worker` and `callplane media` serve it on metrics_port.
    metrics_token: str | None = Field(default=None, repr=False)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Traces: "otlp" sends spans over OTLP/HTTP (OTEL_EXPORTER_OTLP_* or trace_otlp_endpoint), "console" prints them.
    trace_exporter: Literal["off", "otlp", "console"] = "off"
    trace_otlp_endpoint: str | None = None  # e.g. http://collector:4318/v1/traces
    trace_service_name: str = "callplane"

    @field_validator("fetch_allowed_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file_from(init_settings, env_settings)
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        if not self.database_url:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'callplane.db').resolve()}"
        url = self.database_url
        for plain in ("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg2://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
            return "sqlite+aiosqlite://" + url[len("sqlite://") :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir

    def effective_admin_token(self) -> str:
        """The admin token from the environment, or one generated once into the data directory.

        Outside development an explicit token is required: a generated one would be an unsafe default.
        """
        if self.admin_token:
            return self.admin_token
        if self.environment == "production":
            raise RuntimeError("CALLPLANE_ADMIN_TOKEN must be set in production")
        return _read_or_create_secret(self.ensure_data_dir() / "admin-token", lambda: secrets.token_urlsafe(32))

    def effective_secret_key(self) -> str:
        if self.secret_key:
            return self.secret_key
        if self.environment == "production":
            raise RuntimeError("CALLPLANE_SECRET_KEY must be set in production")
        from cryptography.fernet import Fernet

        return _read_or_create_secret(self.ensure_data_dir() / "secret.key", lambda: Fernet.generate_key().decode())


def _config_file_from(*sources: PydanticBaseSettingsSource) -> Path | None:
    for source in sources:
        values: dict[str, Any] = source()
        if values.get("config_file"):
            return Path(values["config_file"])
    return None


def _read_or_create_secret(path: Path, make: Any) -> str:
    if path.exists():
        return path.read_text().strip()
    value = str(make())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return value
