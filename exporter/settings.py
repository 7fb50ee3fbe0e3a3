"""Settings from environment variables and command-line flags, validated in one place.

Every setting has an environment variable and a flag; a flag wins over the environment. Validation
problems are collected and reported as one line per setting, naming both spellings, so an operator
can fix a Deployment without reading a traceback.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from exporter import __version__
from exporter.filters import BenchmarkFilter, compile_name_filter
from exporter.labels import check_metadata_keys

DEFAULT_SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# One minute to one day: benchmark runs take minutes to hours.
DEFAULT_DURATION_BUCKETS = (
    60.0,
    120.0,
    300.0,
    600.0,
    1200.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    43200.0,
    86400.0,
)

LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]


class SettingsError(Exception):
    """Settings could not be loaded; `problems` holds one human-readable line per setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    """All settings of the exporter. Names of environment variables are the public contract."""

    model_config = SettingsConfigDict(
        env_prefix="RUNLOOP_EXPORTER_",
        case_sensitive=False,
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    # The SDKs' own variable names. Exactly these: a bare BASE_URL or API_KEY, common in containers,
    # must never redirect the key to another host. Flags and tests use the field names.
    api_key: SecretStr | None = Field(default=None, validation_alias="RUNLOOP_API_KEY")
    api_key_file: Path | None = Field(default=None, validation_alias="RUNLOOP_API_KEY_FILE")
    base_url: str = Field(default="https://api.runloop.ai", validation_alias="RUNLOOP_BASE_URL")
    address: str = "0.0.0.0"  # noqa: S104 - an exporter listens on all interfaces by default
    port: Annotated[int, Field(ge=1, le=65535)] = 9756
    sync_interval_seconds: Annotated[float, Field(ge=1, le=86400)] = 60.0
    page_size: Annotated[int, Field(ge=1, le=5000)] = 1000
    request_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 30.0
    sync_timeout_seconds: Annotated[float | None, Field(gt=0)] = None
    full_read_timeout_seconds: Annotated[float, Field(gt=0)] = 1800.0
    sync_mode: Literal["incremental", "full"] = "incremental"
    reconcile_interval_seconds: Annotated[float, Field(ge=60)] = 3600.0
    web_config_file: Path | None = None
    read_header_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    idle_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0
    max_connections: Annotated[int, Field(ge=1, le=100_000)] = 512
    log_format: LogFormat = "json"
    log_level: LogLevel = "info"
    score_buckets: Annotated[tuple[float, ...], NoDecode] = DEFAULT_SCORE_BUCKETS
    duration_buckets: Annotated[tuple[float, ...], NoDecode] = DEFAULT_DURATION_BUCKETS
    include_benchmark_ids: Annotated[tuple[str, ...], NoDecode] = ()
    exclude_benchmark_ids: Annotated[tuple[str, ...], NoDecode] = ()
    include_benchmark_names: str | None = None
    exclude_benchmark_names: str | None = None
    metadata_labels: Annotated[tuple[str, ...], NoDecode] = ()
    metadata_label_max_values: Annotated[int, Field(ge=1, le=10000)] = 20
    purpose_label: bool = False
    demo: bool = False

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("score_buckets", "duration_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return tuple(float(part) for part in value.split(",") if part.strip())
            except ValueError:
                raise ValueError("must be a comma-separated list of numbers, e.g. 0.25,0.5,1") from None
        return value

    @field_validator("score_buckets", "duration_buckets")
    @classmethod
    def _check_buckets(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("must list at least one bucket bound")
        if not all(math.isfinite(b) and b > 0 for b in value):
            raise ValueError("bucket bounds must be finite numbers above 0")
        if any(a >= b for a, b in itertools.pairwise(value)):
            raise ValueError("bucket bounds must be strictly increasing")
        return value

    @field_validator("include_benchmark_ids", "exclude_benchmark_ids", "metadata_labels", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return tuple(dict.fromkeys(str(part).strip() for part in value if str(part).strip()))
        return value

    @field_validator("metadata_labels")
    @classmethod
    def _check_metadata_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_metadata_keys(value)

    @field_validator("include_benchmark_names", "exclude_benchmark_names")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        compile_name_filter(value)
        return value or None

    def benchmark_filter(self) -> BenchmarkFilter:
        """The include/exclude settings as one filter."""
        return BenchmarkFilter(
            include_ids=frozenset(self.include_benchmark_ids),
            exclude_ids=frozenset(self.exclude_benchmark_ids),
            include_names=compile_name_filter(self.include_benchmark_names),
            exclude_names=compile_name_filter(self.exclude_benchmark_names),
        )

    @model_validator(mode="after")
    def _check_filters(self) -> Settings:
        if self.include_benchmark_ids and not set(self.include_benchmark_ids) - set(
            self.exclude_benchmark_ids
        ):
            raise ValueError(
                f"{describe('exclude_benchmark_ids')} removes every id of {describe('include_benchmark_ids')}"
            )
        return self

    @property
    def sync_deadline_seconds(self) -> float:
        """How long one incremental sync may take: the setting, or 90% of the interval."""
        if self.sync_timeout_seconds is not None:
            return self.sync_timeout_seconds
        return self.sync_interval_seconds * 0.9

    @model_validator(mode="after")
    def _check_timeout(self) -> Settings:
        if self.sync_timeout_seconds is not None and self.sync_timeout_seconds >= self.sync_interval_seconds:
            raise ValueError(
                f"{describe('sync_timeout_seconds')} must be shorter than {describe('sync_interval_seconds')}"
            )
        return self

    @model_validator(mode="after")
    def _check_key(self) -> Settings:
        key = None if self.api_key is None else self.api_key.get_secret_value()
        problem = key_problem(key, self.api_key_file, demo=self.demo)
        if problem:
            raise ValueError(problem)
        return self


def key_problem(key: str | None, key_file: Path | str | None, *, demo: bool) -> str | None:
    """What is wrong with the key settings, if anything."""
    if demo:
        return None
    if key is not None and key_file is not None:
        return "give RUNLOOP_API_KEY or RUNLOOP_API_KEY_FILE, not both"
    if key is None and key_file is None:
        return "RUNLOOP_API_KEY or RUNLOOP_API_KEY_FILE is required (or --demo)"
    if key is not None and not key.strip():
        return "RUNLOOP_API_KEY is empty"
    if key_file is not None:
        try:
            read_key_file(Path(key_file))
        except ValueError as exc:
            return str(exc)
    return None


def read_key_file(path: Path) -> str:
    """Read a key from a file such as a mounted Kubernetes Secret; surrounding whitespace is ignored."""
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"RUNLOOP_API_KEY_FILE cannot be read: {exc.strerror or exc}") from None
    if not key:
        raise ValueError("RUNLOOP_API_KEY_FILE is empty")
    return key


@dataclass(frozen=True)
class _Option:
    field: str
    env: str
    flag: str
    help: str
    metavar: str = "VALUE"


def _opt(field: str, help_text: str, env: str | None = None, metavar: str = "VALUE") -> _Option:
    return _Option(
        field=field,
        env=env or f"RUNLOOP_EXPORTER_{field.upper()}",
        flag="--" + field.replace("_", "-"),
        help=help_text,
        metavar=metavar,
    )


OPTIONS: tuple[_Option, ...] = (
    _opt("api_key", "Runloop API key (prefer the file or the environment)", "RUNLOOP_API_KEY", "KEY"),
    _opt("api_key_file", "file holding the API key, re-read when it changes", "RUNLOOP_API_KEY_FILE", "PATH"),
    _opt("base_url", "Runloop API base URL (default https://api.runloop.ai)", "RUNLOOP_BASE_URL", "URL"),
    _opt("address", "address to listen on (default 0.0.0.0)", metavar="ADDR"),
    _opt("port", "port to listen on (default 9756)", metavar="PORT"),
    _opt("sync_interval_seconds", "seconds between syncs with the API (default 60)", metavar="SECONDS"),
    _opt("page_size", "runs per API page, 1..5000 (default 1000)", metavar="N"),
    _opt("request_timeout_seconds", "timeout of one API request (default 30)", metavar="SECONDS"),
    _opt(
        "sync_timeout_seconds",
        "deadline of one sync, below the interval (default 90%% of it)",
        metavar="SECONDS",
    ),
    _opt(
        "full_read_timeout_seconds",
        "deadline of a full read: backfill or reconcile (default 1800)",
        metavar="SECONDS",
    ),
    _opt("sync_mode", "incremental (default) or full (re-read every run each sync)", metavar="MODE"),
    _opt(
        "reconcile_interval_seconds",
        "seconds between full reads that heal drift (default 3600)",
        metavar="SECONDS",
    ),
    _opt(
        "web_config_file", "TLS and basic-auth config for /metrics, exporter-toolkit format", metavar="PATH"
    ),
    _opt(
        "read_header_timeout_seconds",
        "close a connection that has not sent a whole request head (TLS handshake included) "
        "within this time (default 10)",
        metavar="SECONDS",
    ),
    _opt(
        "idle_timeout_seconds",
        "close a keep-alive connection idle between requests for this long (default 120)",
        metavar="SECONDS",
    ),
    _opt(
        "max_connections",
        "open connections at most; past it the longest-waiting one is closed (default 512)",
        metavar="N",
    ),
    _opt("log_format", "json or console (default json)", metavar="FORMAT"),
    _opt("log_level", "debug, info, warning or error (default info)", metavar="LEVEL"),
    _opt("score_buckets", "comma-separated score histogram bounds", metavar="LIST"),
    _opt("duration_buckets", "comma-separated duration histogram bounds in seconds", metavar="LIST"),
    _opt(
        "include_benchmark_ids",
        "comma-separated benchmark ids: export only these (each listed with the API's filter)",
        metavar="IDS",
    ),
    _opt("exclude_benchmark_ids", "comma-separated benchmark ids not to export", metavar="IDS"),
    _opt(
        "include_benchmark_names",
        "export only benchmarks whose name fully matches this Python regex",
        metavar="REGEX",
    ),
    _opt(
        "exclude_benchmark_names",
        "do not export benchmarks whose name fully matches this Python regex",
        metavar="REGEX",
    ),
    _opt(
        "metadata_labels",
        "comma-separated run metadata keys exported as metadata_<key> labels (default none)",
        metavar="KEYS",
    ),
    _opt(
        "metadata_label_max_values",
        "distinct values kept per extra label; the rest become __other__ (default 20)",
        metavar="N",
    ),
    _opt("purpose_label", "true to export each run's purpose as a label (default false)", metavar="BOOL"),
)
_BY_FIELD = {option.field: option for option in OPTIONS}
_BY_ENV = {option.env: option for option in OPTIONS}


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors share one format."""

    def error(self, message: str) -> Any:
        raise SettingsError([message.replace("argument command: invalid choice:", "unknown command")])


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; every flag mirrors an environment variable."""
    parser = _Parser(
        prog="runloop-exporter",
        description="Prometheus exporter for Runloop benchmark runs. "
        "Every flag can also be set by the environment variable shown.",
    )
    parser.add_argument("--version", action="version", version=f"runloop-exporter {__version__}")
    parser.add_argument(
        "--demo",
        action="store_true",
        default=None,
        help="serve metrics of a built-in simulated Runloop account (no key needed)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        default=None,
        help="sync once, print the exposition to stdout and exit: 0, or 1 when the sync failed",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("check",),
        help="check: validate the settings, ask the API once, print what it found or what is wrong; exit 0 or 1",
    )
    for option in OPTIONS:
        parser.add_argument(
            option.flag, dest=option.field, metavar=option.metavar, help=f"{option.help} [{option.env}]"
        )
    return parser


def describe(field: str) -> str:
    """How an operator spells a setting: environment variable and flag."""
    option = _BY_FIELD.get(field) or _BY_ENV.get(field)  # errors name aliased fields by their alias
    if option is None:
        return f"--{field.replace('_', '-')}"
    return f"{option.env} ({option.flag})"


def _format_error(error: Any) -> str:
    location = [str(part) for part in error.get("loc", ()) if not str(part).isdigit()]
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    if not location:
        return message
    field = location[0]
    return f"{describe(field)}: {message}"


Mode = Literal["serve", "once", "check"]


@dataclass(frozen=True)
class Invocation:
    """What the command line asks for: the settings, and whether to serve, sync once or check."""

    settings: Settings
    mode: Mode


def load_invocation(argv: Sequence[str] | None = None) -> Invocation:
    """Parse the command line and the environment; raise SettingsError listing all problems."""
    args = vars(build_parser().parse_args(list(argv) if argv is not None else None))
    once, command = args.pop("once"), args.pop("command")
    if once and command:
        raise SettingsError(["give --once or check, not both"])
    mode: Mode = "check" if command == "check" else "once" if once else "serve"
    return Invocation(_validate({key: value for key, value in args.items() if value is not None}), mode)


def _validate(given: dict[str, Any]) -> Settings:
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = list(dict.fromkeys(_format_error(error) for error in exc.errors()))
        # Cross-field checks do not run when a field is invalid; the key is worth reporting anyway.
        if not any("RUNLOOP_API_KEY" in problem for problem in problems):
            env = os.environ
            demo = str(given.get("demo", env.get("RUNLOOP_EXPORTER_DEMO", ""))).lower() in (
                "1",
                "true",
                "yes",
                "on",
            )
            key = given.get("api_key", env.get("RUNLOOP_API_KEY"))
            key_file = given.get("api_key_file", env.get("RUNLOOP_API_KEY_FILE"))
            problem = key_problem(None if key is None else str(key), key_file, demo=demo)
            if problem:
                problems.append(problem)
        raise SettingsError(problems) from None
    except SourceError as exc:  # a value the environment source itself could not decode
        raise SettingsError([str(exc)]) from None
