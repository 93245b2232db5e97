"""The Kubernetes backend's host-side cost per task, next to plain KubernetesPodOperator.

Run from the repository root::

    .venv/bin/python bench/kubernetes.py            # about ten seconds
    .venv/bin/python bench/kubernetes.py --quick    # CI smoke run
    .venv/bin/python bench/kubernetes.py --json     # one JSON object on stdout

Per task, in the same interleaved rounds:

* ``isolated``: seal the envelope (one connection, ``VARIABLES`` variables, a BashOperator
  spec), build the per-task Secret manifest, build the pod with the backend's
  KubernetesPodOperator (``build_pod_request_obj``) and serialise it as the API client
  sends it.
* ``plain-kpo``: KubernetesPodOperator building the same pod the way users do without
  isolation: the connection URI and the variables as plain ``env_vars``, serialised the same
  way.

Nothing talks to a cluster: the hook's in-cluster probe and XCom sidecar image lookup are
fixed values, the same for both. ``ratio`` = isolated median / plain median (target
<= 1.2). The envelope sizes are the text sizes for a typical task and for one carrying a
1 MiB-sized variable, with which transport can carry each (env: 96 KiB, Secret: 1 MiB).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path, and this file's name would
# hide the kubernetes client package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

VARIABLES = 10
TARGET = 1.2


def _payload(variables: dict[str, str]) -> Any:
    from isolation.transport.payload import ConnectionSpec, OperatorSpec, Payload, TaskContext

    now = dt.datetime.now(dt.timezone.utc)
    return Payload(
        operator=OperatorSpec(
            import_path="airflow.operators.bash.BashOperator", kwargs={"task_id": "t", "bash_command": "echo hi"}
        ),
        context=TaskContext(dag_id="bench", task_id="t", run_id="manual__1", logical_date=now, start_date=now),
        connections={
            "warehouse": ConnectionSpec(conn_type="postgres", host="db", login="etl", password="p" * 24, port=5432)
        },
        variables=variables,
    )


class _Context(dict):  # type: ignore[type-arg]
    pass


class _TI:
    dag_id, task_id, run_id, map_index, try_number = "bench", "t", "manual__1", -1, 1

    def xcom_push(self, *args: Any, **kwargs: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import logging

    logging.disable(logging.INFO)  # the provider logs each pod it builds
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import ApiClient

    from isolation.backends.kubernetes import backend as kube_backend
    from isolation.backends.kubernetes import secret as kube_secret
    from isolation.transport import ENV_VAR_LIMIT, FILE_LIMIT, Keyset, seal_envelope

    KubernetesHook.is_in_cluster = property(lambda self: False)  # type: ignore[method-assign,assignment]
    KubernetesHook.get_xcom_sidecar_container_image = lambda self: "alpine:3"  # type: ignore[method-assign]
    KubernetesHook.get_xcom_sidecar_container_resources = lambda self: None  # type: ignore[method-assign]
    KubernetesHook.get_xcom_sidecar_container_security_context = lambda self: None  # type: ignore[method-assign]
    serialise = ApiClient().sanitize_for_serialization
    signer, recipient = Keyset.generate_signer(), Keyset.generate_recipient("bench")
    variables = {f"var_{i}": f"value-{i}-" + "v" * 40 for i in range(VARIABLES)}
    context = _Context(ti=_TI(), run_id="manual__1", dag=None)
    image = "registry.example/isolation-bench:0123456789abcdef"

    def isolated() -> None:
        text = seal_envelope(_payload(variables), signer=signer, recipient=recipient.public(), lifetime=600)
        name = kube_secret.new_name()
        json.dumps(kube_secret.manifest(name, "jobs", "bench", text))
        operator = kube_backend.build_operator(
            task_id="t",
            image=image,
            envelope_secret=name,
            keys_secret="isolation-keys-bench",
            envelope_env=None,
            options={"namespace": "jobs"},
            on_log=lambda line: None,
        )
        json.dumps(serialise(operator.build_pod_request_obj(context)))

    def plain() -> None:
        env = {
            "AIRFLOW_CONN_WAREHOUSE": "postgres://etl:" + "p" * 24 + "@db:5432",
            **{k.upper(): v for k, v in variables.items()},
        }
        operator = KubernetesPodOperator(
            task_id="t",
            image=image,
            cmds=["bash", "-c"],
            arguments=["echo hi"],
            env_vars=env,
            namespace="jobs",
            do_xcom_push=True,
        )
        json.dumps(serialise(operator.build_pod_request_obj(context)))

    rounds = 30 if args.quick else 200
    samples: dict[str, list[float]] = {"isolated": [], "plain-kpo": []}
    contenders = [("isolated", isolated), ("plain-kpo", plain)]
    for _ in range(5):
        isolated(), plain()
    for i in range(rounds):
        for name, fn in contenders[i % 2 :] + contenders[: i % 2]:
            started = time.perf_counter_ns()
            fn()
            samples[name].append((time.perf_counter_ns() - started) / 1e6)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratio = medians["isolated"] / medians["plain-kpo"]

    typical = len(seal_envelope(_payload(variables), signer=signer, recipient=recipient.public(), lifetime=600))
    big = {"blob": "b" * (700 * 1024)}
    large = len(seal_envelope(_payload(big), signer=signer, recipient=recipient.public(), lifetime=600))

    def fits(size: int) -> str:
        return "env or secret" if size <= ENV_VAR_LIMIT else "secret" if size <= FILE_LIMIT else "none"

    result = {
        "isolated_ms": round(medians["isolated"], 3),
        "plain_kpo_ms": round(medians["plain-kpo"], 3),
        "ratio": round(ratio, 3),
        "target": TARGET,
        "met": ratio <= TARGET,
        "envelope_chars_typical": typical,
        "envelope_typical_fits": fits(typical),
        "envelope_chars_700k_variable": large,
        "envelope_700k_fits": fits(large),
        "env_limit": ENV_VAR_LIMIT,
        "secret_limit": FILE_LIMIT,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"per task, median of {rounds}: isolated {result['isolated_ms']} ms, plain KPO {result['plain_kpo_ms']} ms"
        )
        print(f"ratio {result['ratio']} (target <= {TARGET}: {'met' if result['met'] else 'MISSED'})")
        print(
            f"envelope text: typical task {typical} chars ({fits(typical)}); "
            f"with a 700 KiB variable {large} chars ({fits(large)})"
        )
        print(f"a 1 MiB variable does not fit any transport: base64url adds a third (limit {FILE_LIMIT} chars)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
