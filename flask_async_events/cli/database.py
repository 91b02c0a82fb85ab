"""The database: ``db upgrade``, ``db downgrade``, ``db current`` and ``db pattern-index``."""

from __future__ import annotations

import sys

import click

from flask_async_events import migrate
from flask_async_events.cli.common import cli
from flask_async_events.errors import IndexUnavailable
from flask_async_events.operations.pattern_index import create_pattern_index, drop_pattern_index
from flask_async_events.state import get_state


@cli.group()
def db() -> None:
    """This package's tables (its own Alembic history and version table)."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Create or upgrade the tables."""
    engine = get_state().db.engine
    migrate.upgrade(engine, revision)
    click.echo(f"Database at revision {migrate.current_revision(engine)}")


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Downgrade the tables to REVISION (``base`` drops them, and their data)."""
    engine = get_state().db.engine
    migrate.downgrade(engine, revision)
    click.echo(f"Database at revision {migrate.current_revision(engine) or 'base'}")


@db.command("pattern-index")
@click.option("--drop", is_flag=True, help="Drop the index instead (payload patterns then read the bodies).")
def pattern_index(drop: bool) -> None:
    """Build (or drop) PostgreSQL's trigram index of the delivered bodies, so payload patterns such
    as data.customer.email:c7@* are looked up, not read from every body. It makes logging each
    attempt dearer (see the performance guide); delivery goes on while it is built."""
    engine = get_state().db.engine
    try:
        if drop:
            click.echo("Pattern index dropped" if drop_pattern_index(engine) else "There was no pattern index")
            return
        click.echo("Building the pattern index (delivery goes on meanwhile)...")
        click.echo(f"Pattern index built in {create_pattern_index(engine):.1f} s: payload patterns are looked up")
    except IndexUnavailable as exc:
        raise click.ClickException(str(exc)) from None


@db.command()
def current() -> None:
    """Show the current and the latest revision."""
    engine = get_state().db.engine
    click.echo(f"current: {migrate.current_revision(engine) or 'none'}  head: {migrate.head_revision()}")
    if migrate.current_revision(engine) != migrate.head_revision():
        sys.exit(1)
