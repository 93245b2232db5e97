"""The payload schema (version 1): everything an isolated task may see.

Strict pydantic models with ``extra="forbid"``; free-form values (operator
arguments, params, conf, XCom values) are limited to the pickle-free value codec
of :mod:`isolation.transport._codec`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from isolation.transport import _codec

SCHEMA_VERSION: Final = 1
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
# ASCII only, like callable references (see _codec).
_IMPORT_PATH = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*([.:]{_IDENTIFIER})", re.ASCII)


class _Strict(BaseModel):
    # No populate_by_name: a field with an alias (ConnectionSpec.schema_) has one name
    # on the wire and in constructors, the alias ("schema").
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _codec_value(value: Any, where: str) -> Any:
    _codec.check(value, where)
    return value


class ConnectionSpec(_Strict):
    """An Airflow connection, field for field (``extra`` is the JSON text Airflow stores)."""

    conn_type: str
    description: str | None = None
    host: str | None = None
    login: str | None = None
    password: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    port: int | None = None
    extra: str | None = None


class OperatorSpec(_Strict):
    """Which operator to build, and with what arguments."""

    import_path: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("import_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not _IMPORT_PATH.fullmatch(value):
            raise ValueError("import_path must look like 'package.module.ClassName'")
        return value

    @field_validator("kwargs")
    @classmethod
    def _kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _codec_value(value, "operator kwargs")  # type: ignore[no-any-return]


class XComInput(_Strict):
    """An XCom value resolved on the host, served to ``ti.xcom_pull`` in isolation."""

    task_id: str
    key: str = "return_value"
    map_index: int = -1
    dag_id: str | None = None
    run_id: str | None = None
    value: Any = None

    @field_validator("value")
    @classmethod
    def _value(cls, value: Any) -> Any:
        return _codec_value(value, "xcom value")


class TaskContext(_Strict):
    """The subset of the Airflow context that crosses the boundary, typed."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    try_number: int = 1
    max_tries: int = 0
    logical_date: dt.datetime | None = None
    data_interval_start: dt.datetime | None = None
    data_interval_end: dt.datetime | None = None
    start_date: dt.datetime | None = None
    run_type: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    dag_run_conf: dict[str, Any] = Field(default_factory=dict)
    owner: str | None = None

    @field_validator("params", "dag_run_conf")
    @classmethod
    def _free(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _codec_value(value, "context")  # type: ignore[no-any-return]


class RuntimeOptions(_Strict):
    """How the runtime behaves; chosen by the host, never by the environment."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    result_path: str | None = None
    export_secrets_to_env: bool = False
    reschedule_to_poke: bool = True
    render_templates: bool = True


class Payload(_Strict):
    """Payload schema version 1."""

    schema_version: Literal[1] = SCHEMA_VERSION
    operator: OperatorSpec
    context: TaskContext
    connections: dict[str, ConnectionSpec] = Field(default_factory=dict)
    variables: dict[str, str] = Field(default_factory=dict)
    xcom_inputs: list[XComInput] = Field(default_factory=list)
    options: RuntimeOptions = Field(default_factory=RuntimeOptions)

    def to_wire(self) -> dict[str, Any]:
        """The plain structure the codec packs (aliases applied, codec values kept)."""
        return self.model_dump(by_alias=True, mode="python")

    def secret_values(self) -> list[str]:
        """Every string the log masker must hide: connection secrets and variable values."""
        values: list[str] = []
        for conn in self.connections.values():
            values += [v for v in (conn.password, conn.extra, conn.login) if v]
        values += [v for v in self.variables.values() if v]
        return values
