"""`isolationctl init`: make a folder an isolation project, and give its environments keys.

Safe to run again: a file that exists is kept unless the user agrees to replace it (never
with ``--yes``), lists such as ``.gitignore`` only gain the lines they lack, and keys are
never replaced.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

import isolation
from isolation.environments.distribution import DISTRIBUTION, canonical_name, requirement_names
from isolation.environments.local import find_python
from isolation.errors import ConfigurationError
from isolationctl._files import write_atomic
from isolationctl._project import PROJECT_FILE, Locations, Project, ProjectConfig, read_config
from isolationctl._ui import ExitCode, done, emit_json, fail, note, warn
from isolationctl.env import Definition, ask, provision, report_keys, template

EXAMPLE = Definition(
    name="example",
    python="3.12",
    requirements=("apache-airflow==2.11.2", "requests==2.31.0"),
    comment="Airflow 2 and a requests version that differs from the host's: each environment has its own.",
)
EXAMPLE_DAG = "example_isolated.py"
NEXT = "isolationctl deploy --local"
# The astro CLI asks before initialising a folder that is not empty; the answer is yes.
_ASTRO_TIMEOUT = 300


@dataclass
class Changes:
    """What this run did to each path, in order, for the summary and --json."""

    yes: bool
    entries: list[tuple[str, Path]] = field(default_factory=list)

    def add(self, what: str, path: Path) -> None:
        self.entries.append((what, path))

    def may_replace(self, path: Path) -> bool:
        """Whether an existing, different user file may be replaced: never with --yes."""
        if self.yes:
            return False
        return ask(f"{path} exists and differs from what init would write; replace it?", default=False)

    def write(self, path: Path, text: str) -> None:
        """Create ``path``; an existing file is kept unless the user agrees to replace it."""
        if not path.exists():
            write_atomic(path, text)
            self.add("created", path)
        elif path.is_file() and path.read_text(encoding="utf-8", errors="replace") == text:
            self.add("kept", path)
        elif path.is_file() and self.may_replace(path):
            write_atomic(path, text)
            self.add("replaced", path)
        else:
            self.add("kept", path)

    def add_lines(self, path: Path, lines: list[str], *, key: str = "line") -> None:
        """Append the entries ``path`` lacks (with their comments); existing lines never change."""
        existing = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        have = {_line_key(line, key) for line in existing}
        missing = [line for line in lines if not _comment(line) and _line_key(line, key) not in have]
        if not missing:
            self.add("kept", path)
            return
        if existing and not self.yes and not ask(f"add {len(missing)} line(s) to {path}?", default=True):
            self.add("kept", path)
            return
        block = [line for line in lines if line in missing or (_comment(line) and line not in existing)]
        separator = [""] if existing and existing[-1].strip() else []
        write_atomic(path, "\n".join([*existing, *separator, *block]) + "\n")
        self.add("updated" if existing else "created", path)

    def mkdir(self, path: Path) -> None:
        if path.is_dir():
            return
        path.mkdir(parents=True)
        self.add("created", path)

    def to_json(self, root: Path) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {"created": [], "updated": [], "replaced": [], "kept": []}
        for what, path in self.entries:
            grouped[what].append(_relative(path, root))
        return grouped


def _comment(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _line_key(line: str, key: str) -> str:
    """What makes two lines the same entry: the line, or for requirements the package."""
    text = line.strip()
    if key == "requirement" and text and not text.startswith("#"):
        return ",".join(sorted(canonical_name(n) for n in requirement_names(text))) or text
    return text


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- the parts


def _config(root: Path, changes: Changes, *, local: bool) -> ProjectConfig:
    """Write ``isolationctl.toml``; an existing one keeps its folders (and its backend unless --local)."""
    path = root / PROJECT_FILE
    current = read_config(root) if path.is_file() else None
    if current is not None and (not local or current.backend == "local"):
        changes.add("kept", path)
        return current
    base = current or ProjectConfig()
    config = ProjectConfig(backend="local", environments=base.environments, dags=base.dags)
    changes.write(path, config.to_toml())
    return read_config(root)


def _example(project: Project, changes: Changes) -> None:
    folder = project.environments / EXAMPLE.name
    EXAMPLE.check()
    for name, text in EXAMPLE.files().items():
        changes.write(folder / name, text)
    changes.write(project.dags / EXAMPLE_DAG, template(f"{EXAMPLE_DAG}.tmpl"))


def _git(root: Path, changes: Changes) -> None:
    git = shutil.which("git")
    if git is None:
        fail("--git needs git, which is not on PATH", hint="install git, or run init without --git")
    inside = subprocess.run(
        [git, "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True, check=False
    )
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        made = subprocess.run([git, "init", "--quiet"], cwd=root, capture_output=True, text=True, check=False)
        if made.returncode != 0:
            fail(f"git init failed: {made.stderr.strip()}", hint="check that the folder is writable")
        changes.add("created", root / ".git")
    changes.add_lines(root / ".gitignore", template("gitignore").splitlines())


def _astro(root: Path, project: Project, changes: Changes) -> str | None:
    """The Astro layout; returns the command to run when the astro CLI is not installed."""
    astro = shutil.which("astro")
    if astro is not None and not (root / ".astro").exists():
        note("running `astro dev init` first")
        ran = subprocess.run(
            [astro, "dev", "init"],
            cwd=root,
            input="y\n",
            capture_output=True,
            text=True,
            check=False,
            timeout=_ASTRO_TIMEOUT,
        )
        if ran.returncode != 0:
            detail = (ran.stderr or ran.stdout).strip().splitlines()
            fail(
                f"astro dev init failed: {detail[-1] if detail else f'exit code {ran.returncode}'}",
                hint="run `astro dev init` yourself, then `isolationctl init --astro` again",
                code=ExitCode.BUILD,
            )
        changes.add("created", root / ".astro")
    changes.add_lines(
        root / "requirements.txt",
        [
            "# The isolation provider, at the version the workers run (the name's 1.0.1 on the public",
            "# index is an older proof of concept): install this host's wheel if your index lacks it.",
            f"{DISTRIBUTION}=={isolation.__version__}",
        ],
        key="requirement",
    )
    changes.add_lines(root / "packages.txt", template("astro-packages.txt").splitlines())
    dockerfile, ours = root / "Dockerfile", template("astro-isolation.Dockerfile")
    if dockerfile.exists():
        changes.add_lines(dockerfile, ours.splitlines())
    else:
        changes.write(dockerfile, template("astro.Dockerfile") + "\n" + ours)
    changes.mkdir(project.dags)
    changes.mkdir(root / "include")
    return None if astro is not None else "astro dev init"


def _check_local(project: Project) -> None:
    """--local: say now what the first local deploy would trip over."""
    if shutil.which("bwrap") is None:
        warn(
            "bubblewrap (bwrap) is not installed: isolated tasks need it (sudo apt-get install bubblewrap libseccomp2)"
        )
    for name in project.names():
        version = project.spec(name).python_version
        try:
            find_python(version)
        except ConfigurationError as exc:
            warn(f"environment {name!r}: {exc.message}; {exc.hint}")


# --------------------------------------------------------------------------- the command


def init(  # noqa: PLR0917 - Typer: one parameter per option
    ctx: typer.Context,
    folder: Annotated[
        Path | None,
        typer.Option(
            "--folder",
            help="The project folder, created if missing (default: --project, else the current folder).",
            show_default=False,
        ),
    ] = None,
    example: Annotated[
        bool, typer.Option("--example", help="Add an example environment and a DAG that uses it.")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Make the local backend the project's default and check its needs.")
    ] = False,
    git: Annotated[
        bool, typer.Option("--git", help="Initialise a git repository with a .gitignore that keeps keys out.")
    ] = False,
    astro: Annotated[
        bool, typer.Option("--astro", help="An Astro-compatible layout (runs `astro dev init` when installed).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Never ask: keep every existing file that differs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was created and kept as JSON.")] = False,
) -> None:
    """Set up an Airflow project folder for isolated tasks and provision its keys.

    Example: isolationctl init --example --local --git
    """
    locations: Locations = ctx.obj
    root = (folder or locations.project_folder or Path.cwd()).absolute()
    if root.exists() and not root.is_dir():
        fail(f"{root} is not a folder", hint="pass a folder with --folder")
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    changes = Changes(yes=yes)
    config = _config(root, changes, local=local)
    project = Project(root, config)
    todo = _astro(root, project, changes) if astro else None
    changes.mkdir(project.environments)
    changes.mkdir(project.dags)
    if example:
        _example(project, changes)
    if git:
        _git(root, changes)
    provisioned = [provision(locations, project.spec(name)) for name in project.names()]
    if local:
        _check_local(project)
    if as_json:
        keys = {p.name: {"keys_dir": str(p.keys_dir), "created": p.created} for p in provisioned}
        emit_json(
            {
                "project": str(root),
                **changes.to_json(root),
                "keyring": str(locations.keyring.path),
                "environments": keys,
                "todo": [todo] if todo else [],
                "next": NEXT,
            }
        )
    _summary(root, changes)
    report_keys(locations, root, provisioned)
    if todo:
        note(f"the astro CLI is not installed; for Astro's own files (it keeps these), run in {root}: {todo}")
    note(f"next: {NEXT}")


def _summary(root: Path, changes: Changes) -> None:
    note(f"project: {root}")
    for what, path in changes.entries:
        line = f"{what:<8} {_relative(path, root)}"
        if what == "kept":
            note(f"  {line}")
        else:
            done(line)
    if any(what == "kept" for what, _ in changes.entries) and changes.yes:
        note("existing files were kept as they are (--yes never replaces a file)")
