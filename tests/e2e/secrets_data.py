"""Known secret strings the leak test hunts for (shared by the DAG files and the tests)."""

CONN_PASSWORD = "conn-password-e2e-91b2"
VAR_SECRET = "variable-secret-e2e-5d6e"
# A password with a backslash, a double quote, a space and non-ASCII letters: its repr, JSON
# and URL-quoted forms all differ from it (the breakout catalogue prints every one).
ESCAPED_PASSWORD = 'p\\ä"ss wörd'
