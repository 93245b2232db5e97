"""``isolationctl keys``: list, add, distribute, promote, retire, revoke, rotate, export, import, audit.

Each command acts on one keyset: the host signer keyset (``--signer``) or an
environment's recipient keyset (``-e NAME``); commands that take a key id find its
keyset themselves. Every command that changes a keyset appends one line to the audit
log (``keys audit``). Private key material is printed only with ``--reveal``.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from isolation.keyring import SIGNERS_FILE, SIGNERS_FILES, write_keys_file
from isolation.transport.keyset import Algorithm, Key, Keyset, KeyStatus, Purpose
from isolationctl import _audit, _rotation
from isolationctl._files import write_atomic
from isolationctl._keystore import KeysetRef, KeyStore
from isolationctl._project import Locations
from isolationctl._ui import ExitCode, done, emit_json, fail, note, table, warn

app = typer.Typer(
    help="Manage the host signer keyset and the environments' recipient keysets, with staged rotation "
    "(docs/keys.md). Example: `isolationctl keys rotate --signer --wait`.",
    no_args_is_help=True,
)

SignerOption = Annotated[bool, typer.Option("--signer", help="Act on the host signer keyset.")]
EnvOption = Annotated[
    str | None, typer.Option("--environment", "-e", help="Act on this environment's recipient keyset.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
# The shortest window sealing allows (a 1 s lifetime + 60 s of skew), and the longest
# lifetime a backend seals with (isolation.backends.base.Backend.envelope_lifetime).
MIN_OVERLAP = 61
LONGEST_BACKEND_LIFETIME = 600
ForceOption = Annotated[bool, typer.Option("--force", help="Skip the safety check (for a compromised key).")]


def _store(ctx: typer.Context) -> KeyStore:
    locations: Locations = ctx.obj
    return KeyStore(locations.keyring, locations.home)


def _ref(signer: bool, environment: str | None) -> KeysetRef:
    if signer == (environment is not None):
        fail("say which keyset: --signer for the host's, or -e NAME for an environment's", code=ExitCode.USAGE)
    return KeysetRef(environment)


def _when(stamp: int) -> str:
    return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _in(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


# --------------------------------------------------------------------------- list


def _row(ref: KeysetRef, keyset: Keyset, key: Key, store: KeyStore) -> dict[str, Any]:
    row: dict[str, Any] = {
        "keyset": ref.label,
        "kid": key.kid,
        "purpose": keyset.purpose.value,
        "algorithm": key.algorithm.value,
        "suite": key.algorithm.suite if keyset.purpose is Purpose.RECIPIENT else None,
        "status": key.status.value,
        "created": _when(key.created_at),
        "status_changed": _when(key.status_changed_at),
    }
    if ref.is_signer:
        environments = store.environments()
        lacking = store.lacking_signer_key(key.kid) if key.accepts else []
        row["distributed"] = f"{len(environments) - len(lacking)}/{len(environments)} envs"
    else:
        assert ref.environment is not None
        row["distributed"] = "host: current" if store.host_copy_current(ref.environment) else "host: STALE"
    return row


def _trusted_rows(store: KeyStore) -> list[dict[str, Any]]:
    """Other hosts' signer keysets the local environments trust: shown, since they can run anything."""
    rows = []
    for filename, (keyset, envs) in sorted(store.trusted_signers().items()):
        for key in keyset:
            rows.append(
                {
                    "keyset": f"trusted:{filename[len('signers-') : -len('.json')]}",
                    "kid": key.kid,
                    "purpose": "signer",
                    "algorithm": key.algorithm.value,
                    "suite": None,
                    "status": key.status.value,
                    "created": _when(key.created_at),
                    "status_changed": _when(key.status_changed_at),
                    "distributed": f"trusted by {len(envs)} envs",
                }
            )
    return rows


@app.command("list")
def list_keys(
    ctx: typer.Context, signer: SignerOption = False, environment: EnvOption = None, as_json: JsonOption = False
) -> None:
    """List every key: id, keyset, purpose, algorithm, status, dates, distribution. Never private material.

    Example: isolationctl keys list --json
    """
    store = _store(ctx)
    refs = [_ref(signer, environment)] if signer or environment else store.refs()
    if not refs:
        fail(
            f"no keys in the keyring {store.keyring.path} or under {store.home}",
            hint="create them with `isolationctl init` or `isolationctl deploy --local`",
            code=ExitCode.KEYS,
        )
    rows = [_row(ref, keyset, key, store) for ref in refs for keyset in [store.load(ref)] for key in keyset]
    if not (signer or environment):
        rows += _trusted_rows(store)
    if as_json:
        emit_json({"keyring": str(store.keyring.path), "home": str(store.home), "keys": rows})
        return
    columns = ("keyset", "kid", "algorithm", "status", "created", "status_changed", "distributed")
    table(
        f"keys in {store.keyring.path} and {store.home}",
        columns,
        ([r[c] for c in columns] for r in rows),
        no_wrap=("kid", "keyset", "status"),
    )


# --------------------------------------------------------------------------- staged steps


@app.command()
def add(
    ctx: typer.Context,
    signer: SignerOption = False,
    environment: EnvOption = None,
    suite: Annotated[
        int | None,
        typer.Option(help="For a recipient keyset: 1 (X25519) or 2 (ML-KEM-768+X25519). Default: the primary's."),
    ] = None,
) -> None:
    """Add a pending key: accepted once distributed, used only after `promote`.

    Example: isolationctl keys add --signer
    """
    store, ref = _store(ctx), _ref(signer, environment)
    algorithm = None
    if suite is not None:
        if ref.is_signer:
            fail("--suite is for recipient keysets; the signer keyset is always Ed25519", code=ExitCode.USAGE)
        algorithm = {1: Algorithm.X25519, 2: Algorithm.MLKEM768_X25519}.get(suite)
        if algorithm is None:
            fail(f"unknown suite {suite}", hint="use --suite 1 or --suite 2", code=ExitCode.USAGE)
    with store.locked():
        keyset, key = store.load(ref).add(algorithm=algorithm)
        store.save(ref, keyset)
        _audit.record(store.keyring.path, "keys add", ref.label, [key.kid])
    done(f"added pending key {key.kid} to {ref}")
    if ref.is_signer:
        note(
            "next: `isolationctl keys distribute --signer` so that every environment trusts it, then "
            f"`isolationctl keys promote {key.kid}`"
        )
    else:
        note(f"the environment holds it and the host's copy is updated; next: `isolationctl keys promote {key.kid}`")


@app.command()
def distribute(ctx: typer.Context, signer: SignerOption = False, environment: EnvOption = None) -> None:
    """Copy public keysets to where they are trusted (the signer's, the environments').

    The public signer keyset goes into every local environment's signers.json, each
    environment's public keyset into the host keyring; without options, both.
    Example: isolationctl keys distribute --signer
    """
    store = _store(ctx)
    refs = [_ref(signer, environment)] if signer or environment else store.refs()
    with store.locked():
        for ref in refs:
            keyset = store.load(ref)
            if ref.is_signer:
                names = store.distribute_signer(keyset)
                done(f"public signer keyset -> {len(names)} local environment(s): {', '.join(names) or 'none'}")
            else:
                assert ref.environment is not None
                store.keyring.save_recipient(keyset)
                done(f"public keyset of {ref.environment!r} -> host keyring {store.host_copy_path(ref.environment)}")
            _audit.record(store.keyring.path, "keys distribute", ref.label, [k.kid for k in keyset])
    note(
        "environments elsewhere (Kubernetes, other machines) need their copies too: "
        "`isolationctl keys export-public --signer` / `isolationctl keys export --format k8s-secret -e NAME`"
    )


@app.command()
def promote(
    ctx: typer.Context,
    kid: Annotated[str, typer.Argument(help="The key id (or a unique prefix).")],
    force: ForceOption = False,
) -> None:
    """Make a pending (or retiring) key the primary; the old primary becomes retiring.

    Refuses a signer key that a local environment does not trust yet (distribute first).
    Example: isolationctl keys promote 29d6c3f6
    """
    store = _store(ctx)
    with store.locked():
        ref, keyset, key = store.locate(kid)
        if key.status is KeyStatus.REVOKED:
            fail(
                f"{key.kid} is revoked: a revoked key never comes back",
                hint="add a new key and promote it",
                code=ExitCode.KEYS,
            )
        if ref.is_signer:
            lacking = store.lacking_signer_key(key.kid)
            if lacking and not force:
                fail(
                    f"signer key {key.kid} is not distributed: {', '.join(lacking)} would refuse envelopes "
                    "signed with it (unknown-key)",
                    hint="`isolationctl keys distribute --signer` first (or --force)",
                    code=ExitCode.KEYS,
                )
        old = next((k.kid for k in keyset if k.status is KeyStatus.PRIMARY), None)
        keyset = keyset.promote(key.kid)
        store.save(ref, keyset)
        _audit.record(
            store.keyring.path, "keys promote", ref.label, [key.kid] + ([old] if old else []), "forced" if force else ""
        )
    done(f"{key.kid} is the primary of {ref}" + (f"; {old} is retiring" if old else ""))
    if old:
        note(
            f"revoke {old} after the overlap window ({keyset.overlap_seconds} s): "
            f"`isolationctl keys revoke {old}` from {_when(int(time.time()) + keyset.overlap_seconds + 1)}"
        )


@app.command()
def retire(ctx: typer.Context, kid: Annotated[str, typer.Argument(help="The key id (or a unique prefix).")]) -> None:
    """Withdraw a pending key that was never promoted (it stays accepted until revoked).

    Example: isolationctl keys retire 29d6c3f6
    """
    store = _store(ctx)
    with store.locked():
        ref, keyset, key = store.locate(kid)
        if key.status is KeyStatus.PRIMARY:
            fail(
                f"{key.kid} is the primary of {ref}: retiring it would leave nothing to "
                f"{'sign' if ref.is_signer else 'seal'} with",
                hint="add and promote another key; the primary then retires by itself",
                code=ExitCode.KEYS,
            )
        keyset = keyset.retire(key.kid)
        store.save(ref, keyset)
        _audit.record(store.keyring.path, "keys retire", ref.label, [key.kid])
    done(f"{key.kid} in {ref} is retiring")


@app.command()
def revoke(
    ctx: typer.Context,
    kid: Annotated[str, typer.Argument(help="The key id (or a unique prefix).")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Revoke now, inside the overlap window or the "
            "primary (a compromised key): a primary is replaced by a new "
            "key first.",
        ),
    ] = False,
) -> None:
    """Refuse a key from now on. Refuses the primary and a key inside its overlap window unless --force.

    Example: isolationctl keys revoke 29d6c3f6
    """
    store = _store(ctx)
    with store.locked():
        ref, keyset, key = store.locate(kid)
        if key.status is KeyStatus.REVOKED:
            note(f"{key.kid} in {ref} is already revoked")
            return
        replaced = None
        if key.status is KeyStatus.PRIMARY:
            if not force:
                fail(
                    f"{key.kid} is the primary of {ref}",
                    hint="rotate first (`isolationctl keys rotate`), or --force to replace it at once "
                    "(a compromised key)",
                    code=ExitCode.KEYS,
                )
            keyset, new = keyset.add()
            keyset = keyset.promote(new.kid)
            replaced = new.kid
        keyset = keyset.revoke(key.kid, force=force)
        store.save(ref, keyset)
        if ref.is_signer:
            store.distribute_signer(keyset)
        _audit.record(
            store.keyring.path,
            "keys revoke",
            ref.label,
            [key.kid] + ([replaced] if replaced else []),
            "forced" if force else "",
        )
    done(f"revoked {key.kid} in {ref}" + (f"; new primary {replaced}" if replaced else ""))
    where = "the local environments have the revocation" if ref.is_signer else "the host copy is updated"
    note(f"{where}; copies elsewhere (Kubernetes Secrets, other hosts) take effect once updated")


@app.command()
def remove(ctx: typer.Context, kid: Annotated[str, typer.Argument(help="The key id (or a unique prefix).")]) -> None:
    """Delete a revoked key for good, private half included.

    Example: isolationctl keys remove 29d6c3f6
    """
    store = _store(ctx)
    with store.locked():
        ref, keyset, key = store.locate(kid)
        if ref.is_signer and key.status is KeyStatus.REVOKED:
            # Another signers*.json that still lists the key as valid would trust it again
            # once this keyset no longer carries its revocation.
            still = store.environments_accepting(key.kid)
            if still:
                fail(
                    f"{', '.join(still)} still trust {key.kid} through another signers*.json file: removing "
                    "the revocation would make them accept it again",
                    hint="remove or update those files (`isolationctl keys untrust NAME`), then remove the key",
                    code=ExitCode.KEYS,
                )
        keyset = keyset.remove(key.kid)
        store.save(ref, keyset)
        if ref.is_signer:
            store.distribute_signer(keyset)
        _audit.record(store.keyring.path, "keys remove", ref.label, [key.kid])
    done(f"removed {key.kid} from {ref}")


@app.command()
def overlap(
    ctx: typer.Context,
    seconds: Annotated[int, typer.Argument(help="The new overlap window in seconds.", metavar="SECONDS")],
    signer: SignerOption = False,
    environment: EnvOption = None,
    force: Annotated[bool, typer.Option("--force", help="Shorten it while a key is retiring.")] = False,
) -> None:
    """Set a keyset's overlap window: how long a demoted key stays accepted (docs/keys.md section 5).

    Example: isolationctl keys overlap 7200 --signer
    """
    store, ref = _store(ctx), _ref(signer, environment)
    if seconds < MIN_OVERLAP:
        fail(
            f"an overlap window of {seconds} s leaves no envelope lifetime: sealing needs lifetime + 60 s "
            f"of clock skew to fit",
            hint=f"use at least {MIN_OVERLAP} s (docs/keys.md section 5)",
            code=ExitCode.USAGE,
        )
    with store.locked():
        keyset = store.load(ref)
        retiring = [k.kid for k in keyset if k.status is KeyStatus.RETIRING]
        if retiring and seconds < keyset.overlap_seconds and not force:
            fail(
                f"{', '.join(retiring)} {'is' if len(retiring) == 1 else 'are'} retiring under the current "
                f"window of {keyset.overlap_seconds} s: a shorter window would allow revoking early, while "
                "envelopes sealed under it may still be in flight",
                hint="finish the rotation first, or --force (for a compromised key: `keys revoke --force`)",
                code=ExitCode.KEYS,
            )
        keyset = keyset.with_overlap(seconds)
        store.save(ref, keyset)
        if ref.is_signer:
            store.distribute_signer(keyset)
        _audit.record(store.keyring.path, "keys overlap", ref.label, [], f"{seconds} s" + (" forced" if force else ""))
    done(f"overlap window of {ref}: {seconds} s; envelopes may live at most {seconds - 60} s")
    if seconds - 60 < LONGEST_BACKEND_LIFETIME:
        warn(
            f"the backends seal envelopes for up to {LONGEST_BACKEND_LIFETIME} s: with this window their tasks "
            f"fail to seal; use at least {LONGEST_BACKEND_LIFETIME + 60} s outside tests"
        )


@app.command()
def rotate(
    ctx: typer.Context,
    *,
    signer: SignerOption = False,
    environment: EnvOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait through the overlap window and finish.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Only say where the rotation stands.")] = False,
    force: ForceOption = False,
) -> None:
    """Rotate a keyset in stages: add, distribute, promote, wait one overlap window, revoke.

    Resumable: run it again to continue; it says when the next step becomes safe.
    Example: isolationctl keys rotate -e legacy --wait
    """
    store, ref = _store(ctx), _ref(signer, environment)
    rotation = _rotation.load_state(store, ref)
    if status:
        _say_status(store, ref, rotation)
        return
    while True:
        with store.locked():
            if rotation is None:
                rotation = _rotation.start(store, ref, done)
            where = _rotation.advance(store, ref, rotation, force=force, say=done)
        if where.step is _rotation.Step.DONE:
            done(f"rotation of {ref} finished: {rotation.new} is the primary, {rotation.old} is revoked")
            return
        if where.step is _rotation.Step.DISTRIBUTE:
            fail(
                f"{', '.join(where.lacking)} still lack signer key {rotation.new}",
                hint="fix their keys directories, then run `isolationctl keys rotate` again",
                code=ExitCode.KEYS,
            )
        remaining = where.ready_at - time.time()
        if not wait:
            note(
                f"next: revoke {rotation.old}, safe from {_when(where.ready_at)} (in {_in(remaining)}); "
                "run this command again then (or now with --wait)"
            )
            return
        note(
            f"waiting {_in(remaining)} for the overlap window before revoking {rotation.old} "
            "(Ctrl-C is safe: run the command again to resume)"
        )
        time.sleep(max(0.0, remaining) + 0.05)


def _say_status(store: KeyStore, ref: KeysetRef, rotation: _rotation.Rotation | None) -> None:
    if rotation is None:
        note(f"no rotation of {ref} in progress")
        return
    where = _rotation.position(store, ref, rotation, store.load(ref))
    extra = f" (safe from {_when(where.ready_at)})" if where.step is _rotation.Step.WAIT else ""
    note(f"rotation of {ref}: {rotation.old} -> {rotation.new}, next step: {where.step.value}{extra}")


# --------------------------------------------------------------------------- export / import


@app.command("export-public")
def export_public(
    ctx: typer.Context,
    signer: SignerOption = False,
    environment: EnvOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """Print (or write) a keyset's public form: safe to commit and to distribute.

    Example: isolationctl keys export-public --signer -o signers.json
    """
    store, ref = _store(ctx), _ref(signer, environment)
    text = store.load(ref).public().to_json()
    _deliver(text, output, private=False)
    _audit.record(store.keyring.path, "keys export-public", ref.label, [])


@app.command()
def export(
    ctx: typer.Context,
    *,
    format: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="k8s-secret (an environment's keys) or airflow-connection (the host's keys)."
        ),
    ],
    environment: EnvOption = None,
    namespace: Annotated[str, typer.Option(help="k8s-secret: the Secret's namespace.")] = "default",
    name: Annotated[
        str | None, typer.Option(help="k8s-secret: the Secret's name (default isolation-keys-NAME).")
    ] = None,
    conn_id: Annotated[str, typer.Option(help="airflow-connection: the connection id.")] = "isolation_default",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (0600).")] = None,
    reveal: Annotated[bool, typer.Option("--reveal", help="Print private key material to stdout.")] = False,
) -> None:
    """Export private keys for a secrets store: a Kubernetes Secret manifest or an Airflow connection.

    Writes to --output (0600); prints to stdout only with --reveal.
    Example: isolationctl keys export --format k8s-secret -e legacy -o ~/secrets/legacy-keys.json
    """
    store = _store(ctx)
    if output is None and not reveal:
        fail(
            "this export holds private keys: write it to a file with --output FILE (0600), "
            "or pass --reveal to print it",
            code=ExitCode.USAGE,
        )
    if format == "k8s-secret":
        if environment is None:
            fail("--format k8s-secret exports one environment's keys: pass -e NAME", code=ExitCode.USAGE)
        text = _k8s_secret(store, environment, namespace, name or f"isolation-keys-{environment}")
        label = f"recipient:{environment}"
    elif format == "airflow-connection":
        text = _airflow_connection(store, conn_id)
        label = "signer"
    else:
        fail(
            f"unknown format {format!r}",
            hint="use --format k8s-secret or --format airflow-connection",
            code=ExitCode.USAGE,
        )
    _deliver(text, output, private=True)
    _audit.record(store.keyring.path, f"keys export --format {format}", label, [], f"to {output or 'stdout'}")


def _k8s_secret(store: KeyStore, environment: str, namespace: str, name: str) -> str:
    recipient = store.load(KeysetRef(environment))
    signer = store.load(KeysetRef()).public()
    data = {
        "recipient.json": base64.b64encode(recipient.to_json().encode()).decode(),
        SIGNERS_FILE: base64.b64encode(signer.to_json().encode()).decode(),
    }
    # JSON is valid YAML: kubectl apply -f accepts it, and no YAML library is needed.
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "isolationctl", "isolation/environment": environment},
        },
        "data": data,
    }
    return json.dumps(manifest, indent=2) + "\n"


def _airflow_connection(store: KeyStore, conn_id: str) -> str:
    """The ``isolation`` connection the operator reads (isolation.operators.keyring_hook)."""
    signer = store.load(KeysetRef()).to_json()
    environments = {name: json.loads(store.load(KeysetRef(name)).public().to_json()) for name in store.environments()}
    extra = json.dumps({"environments": environments}, separators=(",", ":"))
    # Airflow's URI form (Connection.get_uri): no host, the password quoted whole, the extra as __extra__.
    uri = f"isolation://:{quote(signer, safe='')}@/?__extra__={quote(extra, safe='')}"
    document = {"conn_type": "isolation", "password": signer, "extra": extra}
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    return (
        f"# Airflow connection {conn_id!r}: the host's private signer keyset and the environments' public keys.\n"
        f"# As a URI ({variable}=...):\n{uri}\n"
        f"# As JSON (a secrets backend's value, or {variable}=...):\n{json.dumps(document)}\n"
    )


def _deliver(text: str, output: Path | None, *, private: bool) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    if private:
        _refuse_unignored_in_git(output)
    write_atomic(output, text, mode=0o600 if private else 0o644)
    done(f"wrote {output}" + (" (0600: it holds private keys)" if private else ""))


def _refuse_unignored_in_git(output: Path) -> None:
    """Private keys never land where `git add .` would commit them."""
    import shutil
    import subprocess

    git = shutil.which("git")
    folder = output.resolve().parent
    if git is None or not folder.is_dir():
        return
    inside = subprocess.run(
        [git, "-C", str(folder), "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True, check=False
    )
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return
    ignored = subprocess.run(
        [git, "-C", str(folder), "check-ignore", "-q", str(output.resolve())], capture_output=True, check=False
    )
    if ignored.returncode != 0:
        fail(
            f"{output} is inside a git work tree and not ignored: a `git add` would commit private keys",
            hint="write it outside the repository (e.g. -o ~/secrets/...), or add it to .gitignore first",
            code=ExitCode.KEYS,
        )


@app.command("import")
def import_keyset(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A keyset file (JSON).", exists=False)],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing keyset with different keys.")] = False,
    trust: Annotated[
        bool, typer.Option("--trust", help="Let every local environment trust another host's signer keyset.")
    ] = False,
) -> None:
    """Import a keyset file into the copy it belongs to.

    An environment's public keyset goes into the host keyring (only for an environment that
    is not local here), its private keyset into its local keys directory; a private signer
    keyset becomes the host's; another host's public signer keyset, with --trust, becomes an
    extra trusted signer of every local environment (`keys untrust NAME` undoes it).
    Example: isolationctl keys import legacy.public.json
    """
    store = _store(ctx)
    if not file.is_file():
        fail(f"{file} does not exist or is not a file")
    keyset = Keyset.load(file)
    with store.locked():
        if keyset.purpose is Purpose.RECIPIENT:
            _import_recipient(store, keyset, force)
        elif keyset.has_private:
            _guard_replace(store.signer_path, keyset, force)
            keyset.save(store.signer_path)
            done(f"imported the host signer keyset {keyset.name!r} into {store.signer_path}")
        else:
            _import_trusted_signer(store, keyset, trust=trust, force=force)
        _audit.record(
            store.keyring.path,
            "keys import",
            f"{keyset.purpose.value}:{keyset.name}",
            [k.kid for k in keyset],
            "private" if keyset.has_private else "public",
        )


def _import_recipient(store: KeyStore, keyset: Keyset, force: bool) -> None:
    if keyset.has_private:
        target = store.recipient_path(keyset.name)
        _guard_replace(target, keyset, force)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        store.save(KeysetRef(keyset.name), keyset)
        done(f"imported environment {keyset.name!r}'s private keyset into {target} and the host copy")
        return
    if store.recipient_path(keyset.name).exists():
        # The host seals to whatever primary this copy names: for a local environment it
        # must follow the environment's own keyset, never a file from elsewhere.
        master = store.load(KeysetRef(keyset.name)).public()
        if keyset.public() != master:
            fail(
                f"environment {keyset.name!r} is local here, and this file differs from its own keyset "
                f"({store.recipient_path(keyset.name)}): the host would seal to keys the environment does not hold",
                hint=f"`isolationctl keys distribute -e {keyset.name}` copies the environment's own keyset",
                code=ExitCode.KEYS,
            )
    target = store.host_copy_path(keyset.name)
    _guard_replace(target, keyset, force)
    store.keyring.save_recipient(keyset)
    done(
        f"imported environment {keyset.name!r}'s public keyset into {target}: the host seals to "
        f"{keyset.primary().kid} from now on"
    )


def _import_trusted_signer(store: KeyStore, keyset: Keyset, *, trust: bool, force: bool) -> None:
    host = store.load(KeysetRef())
    filename = f"signers-{keyset.name}.json"
    if keyset.name == host.name or any(host.find(key.kid) for key in keyset):
        fail(
            f"this is a copy of this host's own signer keyset {host.name!r}, not another host's: trusting it "
            "separately would keep its revoked keys trusted",
            hint="`isolationctl keys distribute --signer` gives the environments the current copy",
            code=ExitCode.KEYS,
        )
    if not trust:
        fail(
            f"trusting signer keyset {keyset.name!r} lets its holder run any operator with any argument in every "
            f"local environment (keys {', '.join(k.kid for k in keyset)})",
            hint="pass --trust if that is what you want",
            code=ExitCode.USAGE,
        )
    if not SIGNERS_FILES.fullmatch(filename):
        fail(f"signer keyset name {keyset.name!r} cannot name a signers file", code=ExitCode.KEYS)
    names = store.environments()
    for env in names:
        if (store.keys_dir(env) / filename).exists() and not force:
            _guard_replace(store.keys_dir(env) / filename, keyset, force)
        write_keys_file(store.keys_dir(env), filename, keyset)
    done(
        f"local environment(s) {', '.join(names) or 'none'} now also trust signer keyset {keyset.name!r} "
        f"({filename}); `isolationctl keys untrust {keyset.name}` undoes it"
    )


@app.command()
def untrust(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The signer keyset's name.")]) -> None:
    """Stop trusting another host's signer keyset (`signers-NAME.json`) in every local environment.

    Example: isolationctl keys untrust other-host
    """
    store = _store(ctx)
    filename = f"signers-{name}.json"
    with store.locked():
        trusted = store.trusted_signers()
        if filename not in trusted:
            known = ", ".join(sorted(n[len("signers-") : -len(".json")] for n in trusted)) or "none"
            fail(f"no local environment trusts a signer keyset {name!r} (trusted: {known})", code=ExitCode.KEYS)
        keyset, envs = trusted[filename]
        for env in envs:
            (store.keys_dir(env) / filename).unlink()
        _audit.record(store.keyring.path, "keys untrust", f"signer:{name}", [k.kid for k in keyset])
    done(f"{', '.join(envs)} no longer trust signer keyset {name!r}")


def _guard_replace(target: Path, keyset: Keyset, force: bool) -> None:
    if not target.exists() or force:
        return
    try:
        existing = {k.kid for k in Keyset.load(target)}
    except Exception:  # unreadable: replacing it needs --force as well
        existing = set()
    if not existing <= {k.kid for k in keyset}:
        fail(
            f"{target} holds keys the imported keyset does not have: importing would drop them",
            hint="pass --force to replace it",
            code=ExitCode.KEYS,
        )


# --------------------------------------------------------------------------- audit


@app.command()
def audit(
    ctx: typer.Context,
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option(min=0, help="Show the last N entries (0: all).")] = 50,
) -> None:
    """Show the audit log of key commands: time, user, command, keyset, key ids (never key material).

    Example: isolationctl keys audit --limit 10
    """
    locations: Locations = ctx.obj
    entries = _audit.read(locations.keyring.path)
    shown = entries[-limit:] if limit > 0 else entries
    if as_json:
        emit_json(shown)
        return
    if not shown:
        warn(f"no audit entries in {_audit.audit_path(locations.keyring.path)}")
        return
    table(
        f"audit log {_audit.audit_path(locations.keyring.path)}",
        ("time", "user", "command", "keyset", "key ids"),
        (
            [e.get("time"), e.get("user"), e.get("command"), e.get("keyset"), " ".join(e.get("key_ids", []))]
            for e in shown
        ),
    )
