"""``shiyu open311 ...``: partners' API keys 接入方密钥 (issued by admins, stored hashed).

``open311_app`` is the ``open311`` command group; ``keys_app`` its ``keys`` sub-group:

* ``shiyu open311 keys add PARTNER [--json]`` prints the new key once;
* ``shiyu open311 keys list [--json]``;
* ``shiyu open311 keys revoke PARTNER``.

Each command is one unit of work run as the system principal, so it is audited like any
other write. The domain is imported when a command runs, keeping ``shiyu --help`` fast.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from shiyu.config import get_settings
from shiyu.kit.db import Database, get_database
from shiyu.kit.errors import DomainError
from shiyu.kit.timeutil import iso
from shiyu.platform.authz.principal import Principal

open311_app = typer.Typer(help="Open311 GeoReport v2 开放311接口: partners and their API keys.", no_args_is_help=True)
keys_app = typer.Typer(help="Partners' API keys 接入方密钥.", no_args_is_help=True)
open311_app.add_typer(keys_app, name="keys")

console = Console(stderr=True)


def _database() -> Database:
    return get_database(get_settings().resolved_database_url())


def _fail(exc: DomainError) -> None:
    console.print("[red]error:[/red] " + escape(exc.detail or exc.code))
    raise typer.Exit(1)


@keys_app.command("add")
def keys_add(
    partner: Annotated[str, typer.Argument(help="partner name 接入方名称 (recorded as the items' channel)")],
    as_json: Annotated[bool, typer.Option("--json", help='print {"partner": ..., "api_key": ...}')] = False,
) -> None:
    """Issue a partner's API key; it is printed once and stored only as a hash."""
    from shiyu.domains.open311 import service

    try:
        with _database().unit_of_work() as session:
            row, key = service.issue_key(session, Principal.system("cli"), partner)
            name = row.partner
    except DomainError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps({"partner": name, "api_key": key}, ensure_ascii=False))
    else:
        typer.echo(key)
        console.print(f"API key for {escape(name)}: shown once, keep it safe 密钥仅显示一次，请妥善保管")


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Partners and their keys (prefix only), when issued, last used, revoked."""
    from shiyu.domains.open311 import service

    try:
        with _database().unit_of_work(write=False) as session:
            rows = [{"partner": r.partner, "key_prefix": r.key_prefix, "created_at": iso(r.created_at),
                     "created_by": r.created_by, "last_used_at": iso(r.last_used_at) if r.last_used_at else None,
                     "use_count": r.use_count, "revoked_at": iso(r.revoked_at) if r.revoked_at else None}
                    for r in service.list_keys(session, Principal.system("cli"))]
    except DomainError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
        typer.echo(f"{r['partner']}\t{r['key_prefix']}…\t{state}\tissued {r['created_at']}\t"
                   f"last used {r['last_used_at'] or '-'}\t{r['use_count']} requests")


@keys_app.command("revoke")
def keys_revoke(
    partner: Annotated[str, typer.Argument(help="partner name 接入方名称")],
) -> None:
    """Revoke a partner's key: refused (403) from the next request on."""
    from shiyu.domains.open311 import service

    try:
        with _database().unit_of_work() as session:
            row = service.revoke_key(session, Principal.system("cli"), partner)
            name = row.partner
    except DomainError as exc:
        _fail(exc)
        return
    console.print(f"revoked the API key of {escape(name)}")
