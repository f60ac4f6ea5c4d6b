"""`avsearch serve`: the HTTP API and web gallery over an index."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from avsearch.cli.common import (
    DeviceOption,
    IndexDirOption,
    StorageOption,
    WeightsDirOption,
    err,
    index_location,
    user_errors,
)

_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@user_errors
def serve_command(
    index_dir: IndexDirOption = None,
    storage_option: StorageOption = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; anything but loopback exposes the index.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.001, help="Largest query upload accepted, in MiB.")
    ] = 64.0,
    warm: Annotated[
        bool,
        typer.Option("--warm/--no-warm", help="Load the text query's models at start, not on the first query."),
    ] = True,
    max_connections: Annotated[
        int | None, typer.Option("--max-connections", min=1, help="Open connections at once (configs/serve.toml).")
    ] = None,
    head_timeout: Annotated[
        float | None,
        typer.Option("--head-timeout", min=0.001, help="Seconds a client has to send a request's headers."),
    ] = None,
    body_timeout: Annotated[
        float | None,
        typer.Option("--body-timeout", min=0.001, help="Seconds a client has to send a whole request body."),
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs) and the web gallery (at /) over an index.

    Search by text, by an uploaded sound, picture or point cloud, or by an indexed item; fetch items,
    their files (with HTTP range requests) and thumbnails. Models load once and stay loaded; the server
    picks up each new commit of `avsearch index` on the same index while it runs.
    """
    import dataclasses

    from avsearch.allocator import limit_malloc_arenas

    limit_malloc_arenas()  # first, before any thread allocates: RSS stays flat under load (avsearch/allocator.py)

    from avsearch.serve.app import create_app
    from avsearch.serve.config import load_serve_config
    from avsearch.serve.run import run_server, set_search_threads
    from avsearch.settings import load_settings

    settings = load_settings()
    asked = {"max_connections": max_connections, "head_timeout": head_timeout, "body_timeout": body_timeout}
    config = load_serve_config()
    limits = dataclasses.replace(config.connections, **{k: v for k, v in asked.items() if v is not None})
    parallel, threads = config.search.resolved()
    set_search_threads(threads)
    app = create_app(
        index_location(index_dir, storage_option),
        weights_dir=weights_dir or settings.weights_dir,
        device=device or settings.device,
        max_upload_bytes=int(max_upload_mb * 2**20),
        warm=warm,
        parallel=parallel,
        announce=lambda line: err.print(line, markup=False, highlight=False),
    )
    where = app.state.live.index_dir
    if not is_loopback(host):
        err.print(
            f"[yellow]avsearch: warning:[/] listening on {host}: anyone who can reach it can search {where} "
            "and read every indexed file",
            highlight=False,
        )
    shown = f"[{host}]" if ":" in host else host
    err.print(f"avsearch: serving {where} at http://{shown}:{port}/ (API docs at /docs)", highlight=False)
    run_server(app, host, port, limits)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
