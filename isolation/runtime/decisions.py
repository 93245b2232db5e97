"""Downstream decisions: what a SkipMixin operator asks to skip or to follow.

In isolation there is neither a database nor a supervisor to set other task instances'
states. The operator runs against the placeholders of ``dagshape``; its calls to
``SkipMixin.skip`` (skip these tasks) and ``skip_all_except`` (follow these branches)
are recorded here and travel back in the result. The host checks each against its own
DAG and applies it with Airflow's own SkipMixin (docs/runtime.md, "Downstream decisions").

Control flow stays the environment's: on Airflow 3 the original methods still run against
the placeholders (validating branch ids, raising ``DownstreamTasksSkipped`` as the task
runner expects); on Airflow 2 they would write to the database, so they only record.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from isolation.runtime import compat

# SkipMixin's own XCom: the host writes it when it applies a decision, never the environment.
SKIPMIXIN_KEY = "skipmixin_key"


@dataclass(frozen=True)
class Decision:
    kind: Literal["skip", "follow"]
    # skip: the task ids to skip; follow: the branch task ids (None: follow none).
    task_ids: list[str] | None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "task_ids": self.task_ids}


@dataclass
class DecisionRecord:
    decisions: list[Decision] = field(default_factory=list)
    structured: bool = True

    def add(self, decision: Decision, operator: Any) -> None:
        if not self.structured:
            raise _no_structure(type(operator).__name__)
        self.decisions.append(decision)


def _task_ids(tasks: Iterable[Any]) -> list[str]:
    # What SkipMixin's _ensure_tasks keeps: operators, not task groups.
    return [t.task_id for t in tasks if isinstance(getattr(t, "task_id", None), str) and hasattr(t, "downstream_list")]


def _branch_ids(branch_task_ids: Any) -> Any:
    """``branch_task_ids`` as a list of str (or None), or the value itself when Airflow's
    own check must reject it (the original method on Airflow 3, the host on Airflow 2)."""
    if branch_task_ids is None:
        return None
    if isinstance(branch_task_ids, str):
        return [branch_task_ids]
    if isinstance(branch_task_ids, Iterable):
        return list(branch_task_ids)
    return branch_task_ids


def _bind(original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
    return inspect.signature(original).bind(*args, **kwargs)


def _recording_skip(original: Callable[..., Any], record: DecisionRecord) -> Callable[..., Any]:
    def skip(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = _bind(original, (self, *args), kwargs)
        tasks = list(bound.arguments.get("tasks") or ())
        bound.arguments["tasks"] = tasks
        record.add(Decision("skip", _task_ids(tasks)), self)
        if compat.AIRFLOW_V3:
            return original(*bound.args, **bound.kwargs)
        return None

    return skip


def _check_branch_ids(ti: Any, branch: Any) -> None:
    """Airflow 2's own checks of ``skip_all_except`` (its messages), against the placeholders."""
    if branch is None:
        return
    if not isinstance(branch, list):
        raise compat.AirflowException(
            "'branch_task_ids' must be either None, a task ID, or an Iterable of IDs, "
            f"but got {type(branch).__name__!r}."
        )
    wrong = {(b, type(b).__name__) for b in branch if not isinstance(b, str)}
    if wrong:
        raise compat.AirflowException(
            f"'branch_task_ids' expected all task IDs are strings. Invalid tasks found: {wrong}."
        )
    invalid = set(branch) - set(ti.task.dag.task_ids)
    if invalid:
        raise compat.AirflowException(
            f"'branch_task_ids' must contain only valid task_ids. Invalid tasks found: {invalid}."
        )


def _owner(bound: inspect.BoundArguments) -> Any:
    # The operator: ``self`` where the method has one, else the task of ``ti``.
    return bound.arguments.get("self") or getattr(bound.arguments.get("ti"), "task", None)


def _recording_skip_all_except(original: Callable[..., Any], record: DecisionRecord, static: bool) -> Any:
    def skip_all_except(*args: Any, **kwargs: Any) -> Any:
        bound = _bind(original, args, kwargs)
        branch = _branch_ids(bound.arguments.get("branch_task_ids"))
        bound.arguments["branch_task_ids"] = branch
        if compat.AIRFLOW_V3:
            # Recorded first: the original ends by raising DownstreamTasksSkipped, or raises
            # AirflowException for ids the DAG does not have, as it would on the host.
            record.add(Decision("follow", branch), _owner(bound))
            return original(*bound.args, **bound.kwargs)
        record.add(Decision("follow", branch), _owner(bound))
        _check_branch_ids(bound.arguments["ti"], branch)
        return None

    return staticmethod(skip_all_except) if static else skip_all_except


def _no_structure(cls_name: str) -> Exception:
    from isolation.errors import OperatorLoadError

    return OperatorLoadError(
        f"{cls_name} decides which downstream tasks run, but the envelope carries no DAG structure",
        hint="the host sends it for operators it can import that may skip, and for operators it cannot "
        "import that have downstream tasks; install the operator's provider on the host too",
    )


def install(record: DecisionRecord, *, structured: bool = True) -> None:
    """Make every SkipMixin of this Airflow record its decisions in ``record``; without the
    DAG's structure a decision would be made against a DAG of one task, so it fails instead."""
    record.structured = structured
    for cls in compat.skipmixin_classes():
        raw_skip = cls.__dict__.get("skip")
        if raw_skip is not None:
            cls.skip = _recording_skip(raw_skip, record)  # type: ignore[attr-defined]
        raw = cls.__dict__.get("skip_all_except")
        if raw is not None:
            static = isinstance(raw, staticmethod)
            original = raw.__func__ if static else raw
            cls.skip_all_except = _recording_skip_all_except(original, record, static)  # type: ignore[attr-defined]
