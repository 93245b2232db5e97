"""Find what an isolated task needs from the host, by reading its arguments.

Functions over the arguments, without Airflow: the only things read are the source
files of the callables among them (a ``CallableRef`` is imported on the host to find
its source). ``IsolatedOperator`` calls them at execute time (never at DAG parse) and
resolves what they return through Airflow's own lookups.

What is found:

- connections: ``*_conn_id`` / ``conn_id`` arguments, and ``conn.<id>``, ``conn['<id>']``,
  ``conn.get('<id>')`` inside Jinja blocks;
- variables: ``var.value.<key>``, ``var.json.<key>``, ``var.value['<key>']``,
  ``var.value.get('<key>', ...)`` inside Jinja blocks;
- XCom inputs: ``xcom_pull('<task>')``, ``xcom_pull(task_ids=..., key=...)`` with literal
  arguments inside Jinja blocks, and ``<anything>.xcom_pull(...)`` calls with literal
  arguments in the source of the callables among the arguments (``python_callable``, and
  functions or ``CallableRef`` values anywhere in them). A callable whose source cannot be
  read (it does not import on the host, or has no source file) is logged once, with how to
  declare its XComs instead.

A reference written with ``get(...)`` is *optional*: a missing connection or variable is
left out (the template's own default applies in isolation) instead of failing the task.
"""

from __future__ import annotations

import ast
import inspect
import logging
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from isolation.transport import CallableRef

RETURN_KEY = "return_value"
log = logging.getLogger(__name__)
# Callables whose source could not be read, already logged: once per process is enough.
_UNREAD: set[str] = set()

# Only text inside Jinja blocks counts: "my conn.id" in plain prose is not a lookup.
_JINJA_BLOCK = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)
_Q = r"""(?P<q>['"])(?P<id>[^'"\\]+)(?P=q)"""
_CONN_ATTR = re.compile(r"\bconn\.(?!get\b)(?P<id>[A-Za-z_]\w*)")
_CONN_ITEM = re.compile(r"\bconn\s*\[\s*" + _Q + r"\s*\]")
_CONN_GET = re.compile(r"\bconn\.get\(\s*" + _Q)
_VAR_ATTR = re.compile(r"\bvar\.(?:value|json)\.(?!get\b)(?P<id>[A-Za-z_]\w*)")
_VAR_ITEM = re.compile(r"\bvar\.(?:value|json)\s*\[\s*" + _Q + r"\s*\]")
_VAR_GET = re.compile(r"\bvar\.(?:value|json)\.get\(\s*" + _Q)
_XCOM_PULL = re.compile(r"\bxcom_pull\s*\(")


@dataclass(frozen=True)
class Reference:
    """One thing the task refers to, and where the reference was found (for messages)."""

    name: str
    where: str
    optional: bool = False


@dataclass
class Discovered:
    """Everything found in an operator's arguments, in order of first appearance."""

    connections: dict[str, Reference] = field(default_factory=dict)
    variables: dict[str, Reference] = field(default_factory=dict)
    xcoms: dict[tuple[str, str], Reference] = field(default_factory=dict)

    def add_connection(self, ref: Reference) -> None:
        _add(self.connections, ref.name, ref)

    def add_variable(self, ref: Reference) -> None:
        _add(self.variables, ref.name, ref)

    def add_xcom(self, task_id: str, key: str, where: str) -> None:
        _add(self.xcoms, (task_id, key), Reference(f"{task_id}:{key}", where))


def _add(table: dict[Any, Reference], key: Any, ref: Reference) -> None:
    known = table.get(key)
    # A required reference anywhere makes the name required.
    if known is None or (known.optional and not ref.optional):
        table[key] = ref


def iter_strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string inside ``value`` (keys and values of nested containers), with a path."""
    stack: list[tuple[Any, str]] = [(value, where)]
    seen: set[int] = set()
    while stack:
        obj, path = stack.pop()
        if isinstance(obj, str):
            yield obj, path
        elif isinstance(obj, Mapping):
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            for key, item in obj.items():
                if isinstance(key, str):
                    yield key, path
                stack.append((item, f"{path}[{key!r}]"))
        elif isinstance(obj, (list, tuple, set, frozenset)):
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(obj))


def jinja_blocks(text: str) -> Iterator[str]:
    if "{" not in text:
        return
    for match in _JINJA_BLOCK.finditer(text):
        yield match.group(1) if match.group(1) is not None else match.group(2)


def scan_template(text: str, where: str, found: Discovered) -> None:
    """Add the connection, variable and XCom references of one template string."""
    for block in jinja_blocks(text):
        for pattern in (_CONN_ATTR, _CONN_ITEM):
            for m in pattern.finditer(block):
                found.add_connection(Reference(m.group("id"), where))
        for m in _CONN_GET.finditer(block):
            found.add_connection(Reference(m.group("id"), where, optional=True))
        for pattern in (_VAR_ATTR, _VAR_ITEM):
            for m in pattern.finditer(block):
                found.add_variable(Reference(m.group("id"), where))
        for m in _VAR_GET.finditer(block):
            found.add_variable(Reference(m.group("id"), where, optional=True))
        for task_id, key in _xcom_pulls(block):
            found.add_xcom(task_id, key, where)


def _xcom_pulls(block: str) -> Iterator[tuple[str, str]]:
    for m in _XCOM_PULL.finditer(block):
        args = _call_arguments(block, m.end())
        if args is None:
            continue
        yield from _literal_pull(args)


def _call_arguments(text: str, start: int) -> str | None:
    """The text between the parentheses of a call whose ``(`` ends at ``start``."""
    depth = 1
    quote: str | None = None
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def _literal_pull(args: str) -> Iterator[tuple[str, str]]:
    """``task_ids`` and ``key`` of an ``xcom_pull(...)`` whose arguments are literals."""
    try:
        call = ast.parse(f"f({args})", mode="eval").body
    except SyntaxError:
        return
    if isinstance(call, ast.Call):
        yield from _literal_call(call)


def _literal_call(call: ast.Call) -> Iterator[tuple[str, str]]:
    """``task_ids`` and ``key`` of one parsed ``xcom_pull`` call, if they are literals."""
    named = {kw.arg: kw.value for kw in call.keywords if kw.arg}
    if len(call.args) > 1 or {"dag_id", "run_id", "include_prior_dates"} & set(named):
        return  # other DAGs or runs are not served in isolation
    task_node = named.get("task_ids", call.args[0] if call.args else None)
    key_node = named.get("key")
    try:
        task_ids = ast.literal_eval(task_node) if task_node is not None else None
        key = ast.literal_eval(key_node) if key_node is not None else RETURN_KEY
    except ValueError:
        return
    if not isinstance(key, str):
        return
    if isinstance(task_ids, str):
        task_ids = [task_ids]
    if isinstance(task_ids, (list, tuple)):
        for task_id in task_ids:
            if isinstance(task_id, str) and task_id:
                yield task_id, key


def scan_source(source: str, where: str, found: Discovered, first_line: int = 1) -> bool:
    """Add the literal ``.xcom_pull(...)`` calls of Python ``source`` (whose first line is the
    file's ``first_line``); False if it does not parse."""
    # An indented def (a method, a function in an if block) parses as the body of "if True:".
    indented = source[:1] in (" ", "\t")
    try:
        tree = ast.parse("if True:\n" + source if indented else source)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "xcom_pull":
            line = first_line + node.lineno - 1 - (1 if indented else 0)
            for task_id, key in _literal_call(node):
                found.add_xcom(task_id, key, f"{where}, line {line}")
    return True


def iter_callables(value: Any, where: str) -> Iterator[tuple[Any, str]]:
    """Every function or ``CallableRef`` inside ``value`` (nested containers too), with a path."""
    stack: list[tuple[Any, str]] = [(value, where)]
    seen: set[int] = set()
    while stack:
        obj, path = stack.pop()
        if isinstance(obj, (types.FunctionType, CallableRef)):
            yield obj, path
        elif isinstance(obj, (Mapping, list, tuple, set, frozenset)):
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            items = obj.items() if isinstance(obj, Mapping) else enumerate(obj)
            stack.extend((item, f"{path}[{key!r}]") for key, item in items)


def scan_callable(obj: Any, where: str, found: Discovered) -> None:
    """Add the XCom pulls in the source of the function ``obj`` (or that a ``CallableRef`` names)."""
    name = obj.path if isinstance(obj, CallableRef) else f"{obj.__module__}:{obj.__qualname__}"
    if isinstance(obj, CallableRef):
        try:
            obj = obj.resolve()
        except Exception as exc:  # it may exist only in the environment
            _cannot_scan(name, where, f"it does not import on the host ({type(exc).__name__})")
            return
    if not isinstance(obj, types.FunctionType) or "<" in obj.__qualname__:
        return  # a class is not followed; lambdas and closures are refused when the task is sealed
    try:
        lines, first_line = inspect.getsourcelines(obj)
    except (OSError, TypeError):
        _cannot_scan(name, where, "its source cannot be read on the host")
        return
    if not scan_source("".join(lines), f"the source of {name} ({where})", found, max(first_line, 1)):
        _cannot_scan(name, where, "its source does not parse on the host")


def _cannot_scan(name: str, where: str, why: str) -> None:
    if name in _UNREAD:
        return
    _UNREAD.add(name)
    log.warning(
        "the XCom pulls of %s (%s) could not be discovered: %s. Declare the XComs it pulls on the "
        "IsolatedOperator: xcom_inputs=['task_id', 'task_id:key'] (or they fail in isolation, unless "
        "lenient_xcom_pull=True)",
        name,
        where,
        why,
    )


def discover(kwargs: Mapping[str, Any]) -> Discovered:
    """References in an operator's keyword arguments (``*_conn_id``, templates, callables' source)."""
    found = Discovered()
    for name, value in kwargs.items():
        is_conn_id = name == "conn_id" or name.endswith("_conn_id")
        # A templated id ("{{ params.conn }}") is only known in isolation: list it in connections=.
        if is_conn_id and isinstance(value, str) and value and "{{" not in value:
            found.add_connection(Reference(value, f"argument {name}"))
        for text, where in iter_strings(value, f"argument {name}"):
            scan_template(text, where, found)
        for callable_, where in iter_callables(value, f"argument {name}"):
            scan_callable(callable_, where, found)
    return found


def normalise_xcom_inputs(items: Iterable[str | tuple[str, str]]) -> list[tuple[str, str]]:
    """``"task"`` means its return value; ``("task", "key")`` or ``"task:key"`` one key."""
    result: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, str):
            task_id, sep, key = item.partition(":")
            pair = (task_id, key if sep else RETURN_KEY)
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(p, str) for p in item):
            pair = (item[0], item[1])
        else:
            raise TypeError(f"xcom_inputs entries are 'task_id', 'task_id:key' or (task_id, key), not {item!r}")
        if not pair[0] or not pair[1]:
            raise TypeError(f"xcom_inputs entry {item!r} has an empty task id or key")
        if pair not in result:
            result.append(pair)
    return result
