"""`triage keys create|list|revoke`: API keys for the service (only their sha256 is stored)."""

from __future__ import annotations

import json
import re

import typer

app = typer.Typer(help="API 密钥 (API keys: create, list, revoke)", no_args_is_help=True)

URL_HELP = "SQLAlchemy URL (default TRIAGE_DATABASE_URL or sqlite:///var/triage.db)"
ROLES = ("clerk", "reviewer", "supervisor", "admin", "auditor")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,47}$")


def _store(url: str | None):  # type: ignore[no-untyped-def]
    from triage_cli.store import open_store

    return open_store(url)


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", "-n", help="Officer or service account id (ASCII, ≤48: zhang.san, intake-01)"),
    role: str = typer.Option(..., "--role", "-r", help="clerk | reviewer | supervisor | admin | auditor"),
    url: str = typer.Option(None, "--db", "--url", help=URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
) -> None:
    """Create a key and print it once (it cannot be shown again)."""
    if role not in ROLES:
        typer.echo(f"错误: 未知角色 {role!r}，可选 {', '.join(ROLES)}", err=True)
        raise typer.Exit(2)
    if not _NAME.match(name):
        typer.echo("错误: --name 须为 1–48 个 ASCII 字母、数字或 . _ @ -（账号标识，不要用姓名）", err=True)
        raise typer.Exit(2)
    record, plaintext = _store(url).create_api_key(name, role, actor="cli")
    if as_json:
        typer.echo(json.dumps({"id": record.id, "key_id": record.prefix, "name": name, "role": role, "key": plaintext}))
        return
    typer.echo(f"id {record.id}  key_id {record.prefix}  name {name}  role {role}")
    typer.echo(plaintext)
    typer.echo("该密钥只显示这一次，请妥善保存（库中只存其 SHA-256）。", err=True)


@app.command("list")
def list_keys(url: str = typer.Option(None, "--db", "--url", help=URL_HELP),
              as_json: bool = typer.Option(False, "--json", help="One JSON object per line")) -> None:
    """List keys (never the keys themselves): id, key id, name, role, created, revoked."""
    for k in _store(url).list_api_keys():
        if as_json:
            typer.echo(k.model_dump_json())
        else:
            revoked = k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "-"
            typer.echo(f"{k.id}\t{k.prefix}\t{k.name}\t{k.role}\t{k.created_at.isoformat(timespec='seconds')}\t{revoked}")


@app.command("revoke")
def revoke(key: str = typer.Argument(..., help="Key id (the 8 characters after trk_) or numeric id"),
           url: str = typer.Option(None, "--db", "--url", help=URL_HELP)) -> None:
    """Revoke a key: requests with it are refused (401) from the next request on, in every worker."""
    store = _store(url)
    match = [k for k in store.list_api_keys() if k.prefix == key or str(k.id) == key]
    if not match:
        typer.echo(f"错误: 没有密钥 {key}", err=True)
        raise typer.Exit(1)
    if not store.revoke_api_key(match[0].id, actor="cli"):
        typer.echo(f"密钥 {key} 已吊销", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {match[0].prefix} ({match[0].name}, {match[0].role})")
