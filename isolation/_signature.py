"""Which keyword arguments an operator class takes, read from its constructors' signatures.

Airflow operators pass what they do not name on to ``super().__init__(**kwargs)``, and
``BaseOperator`` refuses what is left ("Invalid arguments were passed to ..."). So the
names a class takes are the named parameters of every ``__init__`` along its MRO, up to
``BaseOperator`` or to the first ``__init__`` without ``**kwargs``, provided each one passes
its ``**kwargs`` on whole. When that cannot be told (a constructor that reads or pops from
its ``**kwargs``, as constructors handling deprecated arguments do; a kwargs-rewriting
hook; no such end; a signature that cannot be read), the answer is "unknown", and nobody
should refuse a name on its account.

Both sides use it: the host to check the wrapped operator's arguments at DAG parse, the
runtime to explain the environment's refusal. It imports no Airflow: the caller passes the
``BaseOperator`` of its own Airflow.
"""

from __future__ import annotations

import difflib
import dis
import inspect
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["accepted_arguments", "closest", "constructor_text", "describe_unknown", "unknown_arguments"]

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def accepted_arguments(cls: type, base: type) -> frozenset[str] | None:
    """The keyword arguments ``cls(...)`` takes; None when its signatures cannot tell."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        return None
    # Airflow lets an operator rewrite its keyword arguments before __init__ sees them.
    if getattr(cls, "_hook_apply_defaults", None) is not None:
        return None
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            # Follows __wrapped__: Airflow's metaclass wraps each __init__ with functools.wraps.
            parameters = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return None
        names.update(name for name, p in parameters.items() if p.kind in _NAMED)
        more = next((name for name, p in parameters.items() if p.kind is inspect.Parameter.VAR_KEYWORD), None)
        if more is None or klass is base:
            names.discard("self")
            return frozenset(names)
        if not _passes_on_whole(inspect.unwrap(init), more):
            return None
    return None


# What a constructor may do with its **kwargs and still pass every name on to the next one:
# read them (``kwargs.get``, ``"x" in kwargs``, ``kwargs["x"]``) or add to them.
_READS_OR_ADDS = frozenset({"get", "setdefault", "keys", "items", "values", "update"})
_PASSED_ON = ("DICT_MERGE", "CALL_FUNCTION_EX")


def _passes_on_whole(init: Callable[..., Any], name: str) -> bool:
    """Whether ``init`` passes its ``**name`` on (``super().__init__(**name)``) without removing any.

    Read from the bytecode (CPython 3.10 to 3.13 compile these uses alike): each load of
    ``name`` must be the ``**name`` of a call, a read, or an addition. Anything else
    (``name.pop(...)``, ``del name["x"]``, passing it to a helper, a closure over it) may
    consume an argument the signature does not list.
    """
    code = getattr(init, "__code__", None)
    if code is None:
        return False
    ops = list(dis.get_instructions(code))
    passed_on = False
    for index, op in enumerate(ops):
        value = op.argval
        if not (value == name or (isinstance(value, tuple) and name in value)):
            continue
        use = _use(op, ops[index + 1 : index + 3], name)
        if use == "other":
            return False
        passed_on = passed_on or use == "passed on"
    return passed_on


def _use(op: dis.Instruction, following: list[dis.Instruction], name: str) -> str:
    """What the instructions after a mention of ``name`` do with it: passed on, read, other."""
    # 3.13 fuses two loads, or a store and a load, into one instruction: the load of name
    # must be the last one, so the next instruction is its use.
    loaded_last = op.argval == name or (isinstance(op.argval, tuple) and op.argval[-1] == name)
    if "LOAD_FAST" not in op.opname or op.opname.startswith("STORE_FAST_STORE") or not loaded_last:
        return "other"
    after = following[0] if following else None
    then = following[1] if len(following) > 1 else None
    if after is None:
        return "other"
    if after.opname in _PASSED_ON:
        return "passed on"
    reads = after.opname == "CONTAINS_OP" or (
        after.opname in ("LOAD_ATTR", "LOAD_METHOD") and after.argval in _READS_OR_ADDS
    )
    subscript = after.opname == "LOAD_CONST" and then is not None and then.opname in ("BINARY_SUBSCR", "STORE_SUBSCR")
    return "read" if reads or subscript else "other"


def unknown_arguments(cls: type, names: Iterable[str], base: type) -> list[str] | None:
    """The ``names`` that ``cls`` does not take, in order; None when that cannot be told."""
    accepted = accepted_arguments(cls, base)
    if accepted is None:
        return None
    return [name for name in names if name not in accepted]


def closest(name: str, cls: type, base: type) -> str | None:
    """The argument of ``cls`` a misspelt ``name`` most likely meant."""
    accepted = accepted_arguments(cls, base) or frozenset()
    found = difflib.get_close_matches(name, sorted(accepted), n=1, cutoff=0.8)
    return found[0] if found else None


def describe_unknown(names: Iterable[str], cls: type, base: type) -> str:
    """``'bash_comand' (did you mean 'bash_command'?), 'other'``: names only, never values."""
    parts = []
    for name in names:
        meant = closest(name, cls, base)
        parts.append(f"{name!r} (did you mean {meant!r}?)" if meant else repr(name))
    return ", ".join(parts)


def constructor_text(cls: type, limit: int = 1000) -> str:
    """``Class(signature)`` of ``cls``'s own constructor, clipped (defaults are code, not task data)."""
    try:
        text = f"{cls.__name__}{inspect.signature(cls)}"
    except (TypeError, ValueError):
        return cls.__name__
    return text if len(text) <= limit else text[:limit] + " ...)"
