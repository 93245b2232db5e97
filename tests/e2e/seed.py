"""Create the end-to-end connections and variables in the metadata DB (run as a host process).

Ids with dots and dashes included; the environment (AIRFLOW_HOME, DB) comes from the caller.
"""

from __future__ import annotations

import json

from airflow.models import Connection, Variable
from airflow.utils.session import create_session
from secrets_data import CONN_PASSWORD, ESCAPED_PASSWORD, VAR_SECRET


def main() -> None:
    with create_session() as session:
        session.add(Connection(conn_id="my.conn-1", conn_type="http", host="conn-host.example", login="someone"))
        session.add(Connection(conn_id="e2e_leaky", conn_type="http", host="h.example", password=CONN_PASSWORD))
        session.add(Connection(conn_id="e2e_escaped", conn_type="http", host="h.example", password=ESCAPED_PASSWORD))
    Variable.set("e2e_plain", "plain-var-value")
    Variable.set("e2e_json", json.dumps({"k": "json-value"}))
    Variable.set("e2e_leaky_var", VAR_SECRET)


if __name__ == "__main__":
    main()
