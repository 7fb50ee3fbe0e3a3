"""Settings from environment variables and command-line flags, validated in one place.

Every setting has an environment variable and a flag; a flag wins over the environment. Validation
problems are collected and reported as one line per setting, naming both spellings, so an operator
can fix a Deployment without reading a traceback.

Long because each setting's field, validator, flag and help text are kept side by side (the flag
table alone is some 130 lines of data), so adding a setting touches one file.
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from exporter import __version__
from exporter.metrics.aggregate import DEFAULT_DURATION_BUCKETS, DEFAULT_SCORE_BUCKETS
from exporter.metrics.budget import DEFAULT_MAX_SERIES
from exporter.metrics.filters import BenchmarkFilter, compile_name_filter
from exporter.metrics.labels import check_metadata_keys
from exporter.runloop.apikey import read_key_file

DEMO_SYNC_INTERVAL_S = 5.0
"""The sync interval of --demo when none is given: its world changes by the second."""

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
    full_read_timeout_seconds: Annotated[float, Field(gt=0)] = 21600.0
    sync_mode: Literal["incremental", "full"] = "incremental"
    reconcile_interval_seconds: Annotated[float, Field(ge=60)] = 3600.0
    max_concurrent_requests: Annotated[int, Field(ge=1, le=64)] = 4
    max_requests_per_second: Annotated[float, Field(gt=0, le=1000)] = 20.0
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
    jobs: bool = True
    jobs_page_size: Annotated[int, Field(ge=1, le=5000)] = 100
    jobs_sync_interval_seconds: Annotated[float | None, Field(ge=1, le=86400)] = None
    jobs_reconcile_interval_seconds: Annotated[float, Field(ge=60)] = 86400.0
    jobs_recheck_max_seconds: Annotated[float, Field(ge=1, le=86400)] = 600.0
    jobs_request_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    agent_model_max_values: Annotated[int, Field(ge=1, le=10000)] = 50
    exception_type_max_values: Annotated[int, Field(ge=1, le=10000)] = 50
    max_series: Annotated[int, Field(ge=1000, le=10_000_000)] = DEFAULT_MAX_SERIES
    state_dir: Path | None = None
    checkpoint_interval_seconds: Annotated[float, Field(ge=0, le=86400)] = 60.0
    demo: bool = False

    # The validators raise ValueError with what is wrong in the value, or with nothing when accepts()
    # says it all; _format_error puts that after the setting's name and what it accepts.
    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError
        return value.rstrip("/")

    @field_validator("score_buckets", "duration_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            for part in parts:
                try:
                    float(part)
                except ValueError:
                    raise ValueError(f"{part!r} is not a number") from None
            return tuple(float(part) for part in parts)
        return value

    @field_validator("score_buckets", "duration_buckets")
    @classmethod
    def _check_buckets(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("no bound is given")
        for bound in value:
            if not (math.isfinite(bound) and bound > 0):
                raise ValueError(f"{bound:g} is not a finite number above 0")
        for low, high in itertools.pairwise(value):
            if low >= high:
                raise ValueError(f"{high:g} does not come after {low:g}")
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
        try:
            compile_name_filter(value)
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("not a valid regular expression: ")) from None
        return value or None

    @field_validator("state_dir", mode="before")
    @classmethod
    def _empty_dir(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("state_dir")
    @classmethod
    def _check_state_dir(cls, value: Path | None) -> Path | None:
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError("it exists and is not a directory")
        return value

    def benchmark_filter(self) -> BenchmarkFilter:
        """The include/exclude settings as one filter."""
        return BenchmarkFilter(
            include_ids=frozenset(self.include_benchmark_ids),
            exclude_ids=frozenset(self.exclude_benchmark_ids),
            include_names=compile_name_filter(self.include_benchmark_names),
            exclude_names=compile_name_filter(self.exclude_benchmark_names),
        )

    @property
    def interval_seconds(self) -> float:
        """The time between syncs: the setting, or DEMO_SYNC_INTERVAL_S in --demo unless one was given."""
        if self.demo and "sync_interval_seconds" not in self.model_fields_set:
            return DEMO_SYNC_INTERVAL_S
        return self.sync_interval_seconds

    @property
    def jobs_interval_seconds(self) -> float:
        """The time between syncs of benchmark jobs: the setting, or the run sync's interval."""
        if self.jobs_sync_interval_seconds is not None:
            return self.jobs_sync_interval_seconds
        return self.interval_seconds

    @property
    def jobs_deadline_seconds(self) -> float:
        """How long one jobs sync may take: 90% of its interval (its full reads go on beside it)."""
        return self.jobs_interval_seconds * 0.9

    @property
    def sync_deadline_seconds(self) -> float:
        """How long one sync may take when serving: the setting, or 90% of the interval."""
        if self.sync_timeout_seconds is not None:
            return self.sync_timeout_seconds
        return self.interval_seconds * 0.9

    @model_validator(mode="after")
    def _check_together(self) -> Settings:
        """Settings that contradict each other; all of them, one per line, for _validate to split."""
        skip = _SKIP_CHECKS_OF.get()
        problems = problems_between(
            {name: getattr(self, name) for name in type(self).model_fields if name not in skip}
        )
        if problems:
            raise ValueError(_PROBLEM_SEPARATOR.join(problems))
        return self


def key_problem(key: str | None, key_file: Path | str | None, *, demo: bool) -> str | None:
    """What is wrong with the key settings, if anything."""
    if demo:
        return None
    if key is not None and key_file is not None:
        return f"{describe('api_key')} and {describe('api_key_file')}: give one of them, not both"
    if key is None and key_file is None:
        return f"{describe('api_key')} or {describe('api_key_file')} is required (or --demo)"
    if key is not None and not key.strip():
        return f"{describe('api_key')}: must be a Runloop API key, not empty"
    if key_file is not None:
        try:
            read_key_file(Path(key_file))
        except ValueError as exc:
            return f"{describe('api_key_file')}: {exc}"
    return None


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
        "deadline of one sync, below the interval (default 90%% of it; 30 in --once)",
        metavar="SECONDS",
    ),
    _opt(
        "full_read_timeout_seconds",
        "deadline of a whole full read: backfill or reconcile (default 21600: each page has its own)",
        metavar="SECONDS",
    ),
    _opt("sync_mode", "incremental (default) or full (re-read every run each sync)", metavar="MODE"),
    _opt(
        "reconcile_interval_seconds",
        "seconds between full reads that heal drift (default 3600)",
        metavar="SECONDS",
    ),
    _opt(
        "max_concurrent_requests",
        "requests to Runloop in flight at once, 1..64 (default 4)",
        metavar="N",
    ),
    _opt(
        "max_requests_per_second",
        "requests to Runloop per second, for the whole process (default 20)",
        metavar="RATE",
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
    _opt("jobs", "false to leave benchmark jobs (agents and models) out (default true)", metavar="BOOL"),
    _opt(
        "jobs_page_size",
        "benchmark jobs per API page at most, 1..5000; pages are also kept near 6 MB (default 100)",
        metavar="N",
    ),
    _opt(
        "jobs_sync_interval_seconds",
        "seconds between syncs of benchmark jobs, a loop of their own (default: the sync interval)",
        metavar="SECONDS",
    ),
    _opt(
        "jobs_reconcile_interval_seconds",
        "seconds between full reads of benchmark jobs that heal drift (default 86400)",
        metavar="SECONDS",
    ),
    _opt(
        "jobs_recheck_max_seconds",
        "a live job that does not change is read again less and less often, at least this often "
        "(default 600)",
        metavar="SECONDS",
    ),
    _opt(
        "jobs_request_share",
        "share of the request rate benchmark jobs may take, above 0 and at most 1 (default 0.5)",
        metavar="SHARE",
    ),
    _opt(
        "agent_model_max_values",
        "distinct (agent_name, model_name) pairs kept per benchmark; the rest become __other__ (default 50)",
        metavar="N",
    ),
    _opt(
        "exception_type_max_values",
        "distinct exception_type values kept; the rest become __other__ (default 50)",
        metavar="N",
    ),
    _opt(
        "max_series",
        "series of a whole scrape at most; past it label values fold into __other__ (default 100000)",
        metavar="N",
    ),
    _opt(
        "state_dir",
        "directory of the checkpoint a restart resumes from, created when missing (default: none)",
        metavar="PATH",
    ),
    _opt(
        "checkpoint_interval_seconds",
        "write the checkpoint at most this often, after a successful sync, and at a clean stop "
        "(default 60; 0: after every sync)",
        metavar="SECONDS",
    ),
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
        help="sync once, print the exposition to stdout and exit 0; when the sync fails, print one line "
        "to stderr and exit 1, at most 5 s after the sync timeout (RUNLOOP_EXPORTER_SYNC_TIMEOUT_SECONDS, "
        "30 s in --once unless set)",
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


def env_of(field: str) -> str:
    """The environment variable of a setting."""
    return _BY_FIELD[field].env


def describe(field: str) -> str:
    """How an operator spells a setting: environment variable and flag."""
    option = _BY_FIELD.get(field) or _BY_ENV.get(field)  # errors name aliased fields by their alias
    if option is None:
        return f"--{field.replace('_', '-')}"
    return f"{option.env} ({option.flag})"


# Setting -> what it accepts, where its type and bounds do not say it all (checked by our validators).
_ACCEPTS = {
    "base_url": "a URL starting with http:// or https://",
    "score_buckets": "comma-separated numbers above 0 in increasing order",
    "duration_buckets": "comma-separated numbers of seconds above 0 in increasing order",
    "include_benchmark_names": "a Python regular expression",
    "exclude_benchmark_names": "a Python regular expression",
    "metadata_labels": "comma-separated metadata keys that give distinct label names",
    "state_dir": "a directory (created when missing), or empty for no checkpoint",
}
_SECRET_FIELDS = {"api_key"}  # never echoed in an error
_PROBLEM_SEPARATOR = "\n"  # between the problems one validator reports at once
# Fields whose checks across settings are skipped: those already reported as invalid (see _validate).
_SKIP_CHECKS_OF: ContextVar[frozenset[str]] = ContextVar("_SKIP_CHECKS_OF", default=frozenset())


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"  # 10000000, not 1e+07


def accepts(field: str) -> str:
    """What a setting accepts, in words, from its type and bounds: "a whole number from 1 to 5000"."""
    if field in _ACCEPTS:
        return _ACCEPTS[field]
    info = Settings.model_fields[field]
    kind = info.annotation
    if get_origin(kind) in (Union, UnionType):  # an optional setting: what it accepts when given
        kind = next(arg for arg in get_args(kind) if arg is not type(None))
    if get_origin(kind) is Literal:
        choices = [str(choice) for choice in get_args(kind)]
        return ", ".join(choices[:-1]) + " or " + choices[-1]
    if kind is bool:
        return "true or false"
    if kind in (int, float):
        noun = "a whole number" if kind is int else "a number"
        if field.endswith("_seconds"):
            noun += " of seconds"
        bound = {n: getattr(m, n) for m in info.metadata for n in ("ge", "gt", "le") if hasattr(m, n)}
        if "ge" in bound and "le" in bound:
            return f"{noun} from {_number(bound['ge'])} to {_number(bound['le'])}"
        words = {"ge": "from {} up", "gt": "above {}", "le": "up to {}"}
        return f"{noun} " + " and ".join(words[n].format(_number(v)) for n, v in bound.items())
    if kind is Path:
        return "a file path"
    return "text"


_PLAIN = re.compile(r"[\w.:/,+@-]+")


def _shown(value: Any) -> str:
    """A given value as an operator typed it; quoted unless it is plainly one word or number."""
    text = str(value)
    return text if _PLAIN.fullmatch(text) else repr(text)


def _field_of(location: str) -> str:
    """The field an error is about: errors name aliased fields (the key) by their alias."""
    option = _BY_ENV.get(location)
    return option.field if option and option.field in Settings.model_fields else location


def _format_error(error: Any) -> list[str]:
    """One pydantic error as problem lines in our words: the setting, what it accepts, what was given."""
    location = [str(part) for part in error.get("loc", ()) if not str(part).isdigit()]
    message = str(error.get("msg", "")).removeprefix("Value error, ").strip()
    if not location:  # a check across settings, which names the settings itself
        return message.split(_PROBLEM_SEPARATOR)
    field = _field_of(location[0])
    if field not in Settings.model_fields:
        return [f"{describe(field)}: {message}"]
    line = f"{describe(field)}: must be {accepts(field)}"
    if field not in _SECRET_FIELDS and "input" in error:
        line += f", not {_shown(error['input'])}"
    if error.get("type") == "value_error" and message:  # our validators say what is wrong in the value
        line += f" ({message})"
    return [line]


def problems_between(values: Mapping[str, Any]) -> list[str]:
    """Settings that contradict each other. `values` holds the valid settings; a check whose settings
    are missing is skipped, so that a problem already reported for a setting is not reported twice."""
    problems: list[str] = []
    if {"include_benchmark_ids", "exclude_benchmark_ids"} <= values.keys():
        included, excluded = values["include_benchmark_ids"], values["exclude_benchmark_ids"]
        if included and not set(included) - set(excluded):
            problems.append(
                f"{describe('exclude_benchmark_ids')}: removes every id of {describe('include_benchmark_ids')},"
                " so nothing would be exported"
            )
    if {"sync_timeout_seconds", "sync_interval_seconds"} <= values.keys():
        timeout, interval = values["sync_timeout_seconds"], values["sync_interval_seconds"]
        if timeout is not None and timeout >= interval:
            problems.append(
                f"{describe('sync_timeout_seconds')}: must be less than {describe('sync_interval_seconds')},"
                f" which is {_number(interval)}, not {_number(timeout)}"
            )
    if {"api_key", "api_key_file", "demo"} <= values.keys():
        key = values["api_key"]
        secret = key.get_secret_value() if isinstance(key, SecretStr) else key
        problem = key_problem(secret, values["api_key_file"], demo=values["demo"])
        if problem:
            problems.append(problem)
    return problems


Mode = Literal["serve", "once", "check"]


@dataclass(frozen=True)
class Invocation:
    """What the command line asks for: the settings, and whether to serve, sync once or check."""

    settings: Settings
    mode: Mode


def load_invocation(argv: Sequence[str] | None = None) -> Invocation:
    """Parse the command line and the environment; raise SettingsError listing every problem at once."""
    parsed, unknown = build_parser().parse_known_args(list(argv) if argv is not None else None)
    args = vars(parsed)
    problems = [f"{arg.split('=', 1)[0]}: no such flag (see runloop-exporter --help)" for arg in unknown]
    once, command = args.pop("once"), args.pop("command")
    if once and command:
        problems.append("give --once or check, not both")
    mode: Mode = "check" if command == "check" else "once" if once else "serve"
    try:
        settings = _validate({key: value for key, value in args.items() if value is not None})
    except SettingsError as exc:
        raise SettingsError(problems + exc.problems) from None
    if problems:
        raise SettingsError(problems)
    return Invocation(settings, mode)


def _validate(given: dict[str, Any]) -> Settings:
    try:
        return Settings(**given)
    except ValidationError as exc:
        errors = exc.errors()
    except SourceError as exc:  # a value the environment source itself could not decode
        raise SettingsError([str(exc)]) from None
    problems = [problem for error in errors for problem in _format_error(error)]
    invalid = frozenset(_field_of(str(error["loc"][0])) for error in errors if error.get("loc"))
    if invalid:
        # Checks across settings run only once every field is valid. Run them now on the valid ones, with
        # the invalid ones at their defaults and left out of the checks, so one run reports everything.
        defaults = {
            name: Settings.model_fields[name].default for name in invalid if name in Settings.model_fields
        }
        token = _SKIP_CHECKS_OF.set(invalid)
        try:
            Settings(**(given | defaults))
        except ValidationError as exc:
            problems += [p for error in exc.errors() if not error.get("loc") for p in _format_error(error)]
        finally:
            _SKIP_CHECKS_OF.reset(token)
    raise SettingsError(list(dict.fromkeys(problems)))
