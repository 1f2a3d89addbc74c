"""Developer tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``bench``, ``docs``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"



@nox.session
def tests(session: nox.Session) -> None:
    """The test suite against the in-process fake hubs (no internet needed)."""
    session.install("-e", ".[test]")
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "src", "tests", "benchmarks", "scripts", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy>=1.10")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed benchmarks against the fake hubs; writes docs/benchmarks.md (needs aria2c)."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Builds the docs site in strict mode (a broken link or reference fails; nothing is fetched
    at build time) and runs every example the docs show against fake hubs."""
    session.install("-e", ".[test,docs]")
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})
    session.run("python", "scripts/check_docs.py")
