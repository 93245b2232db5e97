"""End to end: ``@task.isolated`` on a real Airflow 3.3 host, in real Airflow 2.11 and 3.3 environments."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
from conftest import HOST_ONLY_SECRET
from harness import run_dag
from secrets_data import CONN_PASSWORD, VAR_SECRET

pytestmark = [pytest.mark.envs, pytest.mark.slow]

EXPECTED = {
    "report_legacy": {"requests": "2.31.0", "airflow": "2.11.2", "python": "3.12."},
    "report_modern": {"requests": "2.32.3", "airflow": "3.3.2", "python": "3.13."},
}


@pytest.fixture(scope="module")
def taskflow_run(airflow_env):
    return run_dag("e2e_taskflow")


def test_mapped_taskflow_functions_run_in_both_environments(taskflow_run) -> None:
    run = taskflow_run
    assert run.state == "success", run.output[-4000:]
    # The host lacks humanize entirely and has another requests: only the environments import them.
    assert importlib.util.find_spec("humanize") is None
    import requests

    assert requests.__version__ not in {"2.31.0", "2.32.3"}
    for task_id, versions in EXPECTED.items():
        assert run.mapped_states[task_id] == {0: "success", 1: "success", 2: "success"}, run.logs.get(task_id)
        for index, n in enumerate((1, 2, 3)):
            xcoms = run.mapped_xcoms[task_id][index]
            returned = xcoms["return_value"]
            assert returned["python"].startswith(versions["python"])
            assert {k: returned[k] for k in ("requests", "airflow")} == {
                "requests": versions["requests"],
                "airflow": versions["airflow"],
            }
            assert returned["n"] == n
            assert returned["map_index"] == index, "each instance's envelope is bound to its map_index"
            assert returned["task_id"] == task_id
            assert returned["label"] == "upstream-label"  # an upstream XCom, resolved on the host
            assert returned["ds"] == run.run_id.split("__", 1)[1][:10]
            assert returned["who"] == "param-value"
            assert returned["variable"] == "plain-var-value"  # discovered: Variable.get("e2e_plain")
            assert returned["conn_host"] == "conn-host.example"  # discovered: BaseHook.get_connection("my.conn-1")
            assert returned["humanized"] == f"{1234567 * n:,}"
            # multiple_outputs (inferred from the dict annotation): every key is an XCom of its own.
            assert xcoms["squared"] == n * n
            assert xcoms["isolation_environment"]["airflow"] == versions["airflow"]
        # Only the environment is rendered (and stored) on the host.
        assert run.rendered[task_id] == {"environment": task_id.split("_", 1)[1]}
    assert run.xcoms["total"]["return_value"] == 2 * (1 + 4 + 9)
    # The return value is the task's XCom, not a log line (PythonOperator logs it by default).
    assert "Returned value was" not in run.logs["report_modern"]


def test_whole_mapped_output_is_one_argument(taskflow_run) -> None:
    run = taskflow_run
    assert run.states["count_reports"] == "success", run.logs.get("count_reports", "")[-3000:]
    assert run.xcoms["count_reports"]["return_value"] == 1 + 2 + 3


def test_values_from_xcom_are_never_discovered_nor_rendered(taskflow_run) -> None:
    run = taskflow_run
    # A mapped *_conn_id from an upstream XCom names another team's connection: not sealed.
    assert run.mapped_states["probe"] == {0: "success"}, run.logs.get("probe", "")[-3000:]
    probed = run.mapped_xcoms["probe"][0]["return_value"]
    assert probed["conn_id"] == "e2e_leaky"
    assert probed["got"] == "ConnectionNotProvided: connection 'e2e_leaky' was not provided to this isolated task"
    assert "0 connection(s)" in run.logs["probe"]
    # A template coming from an upstream XCom arrives verbatim; the DAG file's literal renders.
    template = "{{ conn.e2e_leaky.password }}"
    assert run.states["verbatim_arg"] == "success", run.logs.get("verbatim_arg", "")[-3000:]
    assert run.xcoms["verbatim_arg"]["return_value"] == {"text": [template], "literal": "param-value"}
    assert run.mapped_xcoms["verbatim_mapped"][0]["return_value"] == {"text": template, "literal": "param-value"}
    assert run.mapped_xcoms["verbatim_literal"][0]["return_value"] == {"text": "param-value", "literal": "x"}
    for task_id in ("probe", "verbatim_arg", "verbatim_mapped"):
        assert CONN_PASSWORD not in json.dumps(run.mapped_xcoms.get(task_id) or run.xcoms.get(task_id))


def test_taskflow_secrets_never_leak(taskflow_run) -> None:
    run = taskflow_run
    assert run.states["uses_secrets"] == "success", run.logs.get("uses_secrets")
    # The function really used them: the masker hid what it printed.
    assert "password=*** variable=*** via=e2e_leaky" in run.logs["uses_secrets"]
    log = "\n".join(line for line in run.output.splitlines() if not line.startswith("E2E-RESULT "))
    report = run.xcoms["uses_secrets"]["return_value"]
    child_env = json.dumps(report)
    for secret in (CONN_PASSWORD, VAR_SECRET, HOST_ONLY_SECRET):
        assert secret not in log, "secret in the task log"
        assert secret not in json.dumps(run.rendered), "secret in the rendered templates"
        assert secret not in child_env, "secret in the isolated process's environment"
    initial = {item.split("=", 1)[0] for item in report["initial_environ"]}
    assert not {name for name in initial if name.startswith("AIRFLOW")}, initial
    assert os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] not in child_env
    assert "ISOLATION_ENVELOPE" not in initial | set(report["environ"])


BAD = {
    "module_scope": (
        "name 'LIMIT' is not defined in the isolated function 'module_scope' (e2e_taskflow_bad.py line 15: "
        "return x * LIMIT)",
        "import LIMIT inside the function, or pass it as an argument",
    ),
    "raises": ("failed: ValueError: boom-taskflow-2", 'File "e2e_taskflow_bad.py", line 20, in raises'),
    "bad_return": ("XCom 'return_value' is not JSON-serialisable", "set"),
    "bad_argument": ("argument 'values' of bad_argument() has type builtins.set", "cannot travel in an envelope"),
    "not_a_dict": ("multiple_outputs", "list"),
    "forges_keys": (
        "forges_keys() returned the reserved key 'isolation_environment' with multiple_outputs",
        "keys starting with 'isolation_' are the host's own",
    ),
    "forges_skip": ("returned the reserved key ' SkipMixin_Key'", "Airflow skips downstream tasks by it"),
}


def test_taskflow_bad_input_fails_clearly(airflow_env) -> None:
    run = run_dag("e2e_taskflow_bad")
    for task_id, texts in BAD.items():
        assert run.states[task_id] == "failed", task_id
        for text in texts:
            assert text in run.logs[task_id], (task_id, text, run.logs[task_id][-2500:])
    # The failing line itself, as the DAG author wrote it, is in the task log.
    assert 'raise ValueError(f"boom-taskflow-{y}")' in run.logs["raises"]
