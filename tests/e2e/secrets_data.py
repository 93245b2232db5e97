"""Known secret strings the leak test hunts for (shared by the DAG files and the tests)."""

CONN_PASSWORD = "conn-password-e2e-91b2"
VAR_SECRET = "variable-secret-e2e-5d6e"
