"""Provider metadata for Airflow's ProvidersManager (the ``apache_airflow_provider`` entry point)."""

from __future__ import annotations

from typing import Any

from isolation import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "apache-airflow-providers-isolation",
        "name": "Isolation",
        "description": "Run any Airflow operator in an isolated environment with its state sealed "
        "in an encrypted, signed envelope.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Isolation",
                "external-doc-url": "https://airflow.apache.org/",
                "tags": ["software"],
            }
        ],
        "operators": [
            {"integration-name": "Isolation", "python-modules": ["isolation.operators.isolated"]},
        ],
        # ProvidersManager only takes a provider's decorators from its own airflow.providers.<name>
        # namespace: the shim re-exports isolation.operators.taskflow.isolated_task.
        "task-decorators": [
            {"name": "isolated", "class-name": "airflow.providers.isolation.decorators.isolated.isolated_task"},
            {
                "name": "isolated_branch",
                "class-name": "airflow.providers.isolation.decorators.isolated.isolated_branch_task",
            },
            {
                "name": "isolated_short_circuit",
                "class-name": "airflow.providers.isolation.decorators.isolated.isolated_short_circuit_task",
            },
        ],
        "hooks": [
            {"integration-name": "Isolation", "python-modules": ["isolation.operators.keyring_hook"]},
        ],
        "connection-types": [
            {
                "connection-type": "isolation",
                "hook-class-name": "isolation.operators.keyring_hook.IsolationKeyringHook",
            }
        ],
    }
