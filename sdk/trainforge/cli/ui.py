"""``trainforge ui``: the web dashboard, served locally (see trainforge.dashboard)."""

from __future__ import annotations

import click

from ..backends import get_backend
from ..errors import BackendError
from .commands import handle_errors, main, out


@main.command()
@click.option("--backend", "backend_name", type=click.Choice(["process", "container", "kubernetes"]), default=None,
              help="whose runs to show (default: the global --backend, trainforge config, else process)")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to bind (0.0.0.0 only behind something that guards it, e.g. in a cluster)")
@click.option("--port", default=8686, show_default=True, type=click.IntRange(0, 65535), help="0: any free port")
@click.option("--read-only", is_flag=True, help="no stop buttons; every POST is refused")
@click.option("--namespace", default=None, help="kubernetes backend: the namespace shown (default: the kubeconfig's)")
@click.pass_context
@handle_errors
def ui(ctx: click.Context, backend_name: str | None, host: str, port: int, read_only: bool,
       namespace: str | None) -> None:
    """Serve the dashboard: runs, curves, logs, compare and tuning jobs in a browser."""
    from ..dashboard.api import DashboardAPI
    from ..dashboard.server import make_server

    backend = get_backend(backend_name or ctx.obj["backend"])
    if namespace:
        if backend.name != "kubernetes":
            raise click.UsageError("--namespace is for the kubernetes backend")
        backend = get_backend("kubernetes", namespace=namespace)
    tuning = None
    if backend.name in ("process", "container"):
        from ..tuning_client import tuning_backend

        tuning = tuning_backend(backend.name)
    try:
        server, _ = make_server(DashboardAPI(backend, tuning), host, port, read_only)
    except OSError as exc:
        raise BackendError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    shown = f"[{host}]" if ":" in host else host
    out.print(f"trainforge ui ({backend.name} backend) on http://{shown}:{server.server_address[1]}/  "
              "(Ctrl-C to stop)", markup=False, highlight=False)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
