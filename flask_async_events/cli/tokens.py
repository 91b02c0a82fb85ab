"""REST API tokens: ``token create``, ``token list`` and ``token revoke``."""

from __future__ import annotations

import json

import click
from sqlalchemy import select

from flask_async_events.auth import create_token, revoke_token
from flask_async_events.cli.common import cli, json_option, print_json
from flask_async_events.models import ApiToken
from flask_async_events.state import get_state


@cli.group()
def token() -> None:
    """REST API bearer tokens (shown once, stored hashed)."""


@token.command("create")
@click.argument("name")
@click.option("--resource", "-r", "resources", multiple=True, help="An ACL resource it holds (repeatable).")
@click.option("--admin", is_flag=True, help="See and change every subscription.")
@json_option
def token_create(name: str, resources: tuple[str, ...], admin: bool, as_json: bool) -> None:
    """Create a token for the REST API and print it (the only time it is shown)."""
    session = get_state().db.session
    try:
        secret = create_token(session, name, resources=resources, admin=admin)
        session.commit()
    except ValueError as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from None
    if as_json:
        print_json({"name": name, "token": secret, "admin": admin, "resources": sorted(set(resources))})
        return
    click.echo(f"Token {name!r} created{' (admin)' if admin else ''}. Keep it safe; it is not shown again:")
    click.echo(secret)


@token.command("list")
@json_option
def token_list(as_json: bool) -> None:
    """List tokens (never the tokens themselves)."""
    rows = get_state().db.session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
    listing = [
        {
            "id": row.id,
            "name": row.name,
            "admin": row.is_admin,
            "resources": json.loads(row.resources),
            "created_at": row.created_at.isoformat(),
            "revoked": row.revoked_at is not None,
        }
        for row in rows
    ]
    if as_json:
        print_json(listing)
        return
    for row in listing:
        flags = ("admin " if row["admin"] else "") + ("REVOKED" if row["revoked"] else "")
        click.echo(f"{row['id']:>4}  {row['name']:<24} {flags:<14} {', '.join(row['resources'])}")


@token.command("revoke")
@click.argument("name_or_id")
def token_revoke(name_or_id: str) -> None:
    """Revoke a token; requests with it get 401 from now on."""
    session = get_state().db.session
    try:
        revoked = revoke_token(session, name_or_id)
        session.commit()
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Token {revoked.name!r} revoked")
