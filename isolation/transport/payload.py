"""The payload schemas (versions 1 and 2): everything an isolated task may see.

Strict pydantic models with ``extra="forbid"``; free-form values (operator
arguments, params, conf, XCom values) are limited to the pickle-free value codec
of :mod:`isolation.transport._codec`.

Schema 2 is schema 1 plus the keys listed in ``SCHEMA_2_KEYS`` (docs/envelope.md,
section 10.5): the DAG's structure, more context and the XCom-pull policy. One model
holds both; a schema 1 payload has the schema 2 keys at the values that mean "schema
1 behaviour", and its wire form leaves them out.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from isolation.transport import _codec

SCHEMA_VERSION: Final = 2
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
    # Schema 2: what the host's Airflow computes from other runs of the DAG.
    prev_data_interval_start_success: dt.datetime | None = None
    prev_data_interval_end_success: dt.datetime | None = None
    prev_start_date_success: dt.datetime | None = None
    prev_end_date_success: dt.datetime | None = None
    prev_logical_date: dt.datetime | None = None
    next_logical_date: dt.datetime | None = None

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
    # Schema 2: an ``xcom_pull`` of an XCom the host did not send raises (schema 1: None).
    strict_xcom_pull: bool = True


class DagTask(_Strict):
    """One task of the DAG as the isolated side sees it: a placeholder with its edges."""

    task_id: str
    downstream: list[str] = Field(default_factory=list)
    task_group: str | None = None
    trigger_rule: str = "all_success"
    is_setup: bool = False
    is_teardown: bool = False


class DagTaskGroup(_Strict):
    """A task group (its full id) and the group it is nested in."""

    group_id: str
    parent: str | None = None


class DagShape(_Strict):
    """The DAG's structure, for operators that decide which downstream tasks run."""

    tasks: list[DagTask] = Field(default_factory=list)
    task_groups: list[DagTaskGroup] = Field(default_factory=list)
    # The timetable as Airflow serializes it (``encode_timetable``): its class and fields.
    timetable_type: str | None = None
    timetable: dict[str, Any] | None = None

    @field_validator("timetable")
    @classmethod
    def _timetable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _codec_value(value, "timetable")  # type: ignore[no-any-return]


# The keys schema 2 adds, per map: a schema 1 wire payload has none of them.
SCHEMA_2_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "payload": ("dag",),
    "context": (
        "prev_data_interval_start_success",
        "prev_data_interval_end_success",
        "prev_start_date_success",
        "prev_end_date_success",
        "prev_logical_date",
        "next_logical_date",
    ),
    "options": ("strict_xcom_pull",),
}
# What a schema 1 payload means by the keys it does not have.
_SCHEMA_1_MEANING: Final[dict[str, Any]] = {"strict_xcom_pull": False}


class Payload(_Strict):
    """Payload schema version 2 (and version 1, without the schema 2 keys)."""

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    operator: OperatorSpec
    context: TaskContext
    connections: dict[str, ConnectionSpec] = Field(default_factory=dict)
    variables: dict[str, str] = Field(default_factory=dict)
    xcom_inputs: list[XComInput] = Field(default_factory=list)
    options: RuntimeOptions = Field(default_factory=RuntimeOptions)
    dag: DagShape | None = None

    @model_validator(mode="before")
    @classmethod
    def _schema_1_meaning(cls, data: Any) -> Any:
        # A schema 1 payload never has the schema 2 keys; give them their schema 1 meaning.
        if isinstance(data, dict) and data.get("schema_version") == 1:
            options = data.get("options")
            if isinstance(options, dict):
                data = {**data, "options": {**_SCHEMA_1_MEANING, **options}}
            elif options is None:
                data = {**data, "options": dict(_SCHEMA_1_MEANING)}
        return data

    @model_validator(mode="after")
    def _schema_1_has_no_schema_2_values(self) -> Payload:
        if self.schema_version == 1:
            defaults = TaskContext.model_fields
            used = [k for k in SCHEMA_2_KEYS["context"] if getattr(self.context, k) != defaults[k].default]
            if self.dag is not None:
                used.append("dag")
            if self.options.strict_xcom_pull:
                used.append("options.strict_xcom_pull")
            if used:
                raise ValueError(f"schema version 1 has no {', '.join(used)}: use schema version 2")
        return self

    def to_wire(self) -> dict[str, Any]:
        """The plain structure the codec packs (aliases applied, codec values kept)."""
        wire = self.model_dump(by_alias=True, mode="python")
        if self.schema_version == 1:
            for key in SCHEMA_2_KEYS["payload"]:
                del wire[key]
            for key in SCHEMA_2_KEYS["context"]:
                del wire["context"][key]
            for key in SCHEMA_2_KEYS["options"]:
                del wire["options"][key]
        return wire

    def secret_values(self) -> list[str]:
        """Every string the log masker must hide: connection secrets and variable values."""
        values: list[str] = []
        for conn in self.connections.values():
            values += [v for v in (conn.password, conn.extra, conn.login) if v]
        values += [v for v in self.variables.values() if v]
        return values
