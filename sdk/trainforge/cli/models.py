"""``trainforge models ...``: the model registry from the command line, thin
over trainforge.registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from ..registry import ModelRegistry, ModelVersion, parse_ref, register_model
from ..registry.documents import check_model_name
from . import render
from .commands import _backend, emit_json, err, handle_errors, main, out, output_option

registry_option = click.option("--registry", "registry_root", default=None, metavar="URI",
                               help="registry root (default: TRAINFORGE_REGISTRY, config `registry:`, "
                                    "else local://trainforge-registry/)")
namespace_option = click.option("--namespace", default="default", show_default=True, help="registry namespace")


def open_registry(root: str | None, namespace: str) -> ModelRegistry:
    return ModelRegistry(root, namespace=namespace)


def metrics_text(metrics: dict[str, float]) -> str:
    return "  ".join(f"{render.printable(k)}={v:.6g}" for k, v in sorted(metrics.items()))


def version_lines(found: ModelVersion, aliases: dict[str, int]) -> list[str]:
    doc, lineage = found.document, found.document["lineage"]
    image, data, ci = lineage["image"], lineage["data"], lineage.get("ci")
    pointing = sorted(a for a, v in aliases.items() if v == found.version)
    lines = [
        (f"model       {render.printable(found.name)}@{found.version}"
         + (f"  ({', '.join(pointing)})" if pointing else "")),
        (f"registered  {doc['registeredAt']}"
         + (f" by {render.printable(doc['registeredBy'])}" if doc.get("registeredBy") else "")),
        f"job         {render.printable(lineage['job']['name'])} ({lineage['job']['backend']}, "
        f"namespace {lineage['job']['namespace']})",
        (f"image       {render.printable(image['ref'])}  "
         + render.printable(image.get("digest") or image.get("id") or f"no digest: {image.get('reason')}")),
        (f"data        sha256 {data['sha256'][:16]}  "
         + ", ".join(f"{render.printable(k)}: {v['objects']} objects, {v['bytes']} bytes"
                     for k, v in sorted(data["channels"].items()))),
        "hparams     " + " ".join(f"{render.printable(k)}={render.printable(v)}"
                                   for k, v in sorted(lineage["hyperparameters"].items())),
        f"metrics     {metrics_text(lineage['metrics'])}",
        f"model file  {render.printable(doc['model']['uri'])} ({doc['model']['bytes']} bytes, "
        f"sha256 {doc['model']['sha256'][:16]})",
    ]
    if ci:
        lines.append(f"ci          {render.printable(ci.get('system'))} {render.printable(ci.get('commit'))}"
                     + (f"  {render.printable(ci['runUrl'])}" if ci.get("runUrl") else ""))
    return lines


@main.group()
def models() -> None:
    """The model registry: register, list, show, promote and download model versions."""


@models.command()
@click.argument("job")
@click.option("--name", "model", required=True, help="model name (lowercase letters, digits, '-', '_')")
@click.option("--promote-to", "alias", default=None, help="also point this alias at the new version")
@registry_option
@namespace_option
@output_option
@click.pass_context
@handle_errors
def register(ctx: click.Context, job: str, model: str, alias: str | None, registry_root: str | None,
             namespace: str, fmt: str) -> None:
    """Register the completed JOB as a new version of model NAME."""
    check_model_name(model)
    registry = open_registry(registry_root, namespace)
    found = register_model(job, model, backend=_backend(ctx), registry=registry)
    if alias:
        registry.promote(model, found.version, alias)
    if fmt == "json":
        emit_json(found.document)
    else:
        err.print(f"registered {render.printable(model)}@{found.version} from job {render.printable(job)}"
                  + (f", now {alias}" if alias else ""), markup=False)
        out.print(f"{model}@{found.version}", markup=False)


@models.command("list")
@click.argument("name")
@registry_option
@namespace_option
@output_option
@handle_errors
def list_(name: str, registry_root: str | None, namespace: str, fmt: str) -> None:
    """List the versions of model NAME, with their aliases."""
    registry = open_registry(registry_root, namespace)
    versions = registry.versions(name)
    aliases = registry.aliases(name)
    if fmt == "json":
        emit_json({"name": name, "aliases": aliases, "versions": [v.document for v in versions]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("VERSION", "ALIASES", "JOB", "METRICS", "REGISTERED", "COMMIT"):
        table.add_column(column)
    for found in versions:
        ci = found.document["lineage"].get("ci") or {}
        table.add_row(str(found.version), ",".join(sorted(a for a, v in aliases.items() if v == found.version)),
                      render.safe(found.job_name), render.safe(metrics_text(found.metrics)),
                      found.document["registeredAt"], render.safe(str(ci.get("commit") or "")[:12]))
    out.print(table)


@models.command()
@click.argument("ref")
@registry_option
@namespace_option
@output_option
@handle_errors
def show(ref: str, registry_root: str | None, namespace: str, fmt: str) -> None:
    """Show one version with its lineage: REF is NAME (latest), NAME@VERSION or NAME@ALIAS."""
    registry = open_registry(registry_root, namespace)
    found = registry.get(parse_ref(ref))
    if fmt == "json":
        emit_json(found.document)
    else:
        out.print("\n".join(version_lines(found, registry.aliases(found.name))), markup=False)


@models.command()
@click.argument("name")
@click.argument("version")
@click.option("--to", "alias", required=True, help="the alias to move, e.g. production")
@click.option("--expect", default=None, metavar="VERSION|none",
              help="move it only if it points at this version now ('none': only if it is not set)")
@registry_option
@namespace_option
@output_option
@handle_errors
def promote(name: str, version: str, alias: str, expect: str | None, registry_root: str | None,
            namespace: str, fmt: str) -> None:
    """Point alias --to of model NAME at VERSION (exit 6 if another promotion moved it meanwhile)."""
    from ..registry.documents import check_version
    from ..registry.registry import UNSET

    registry = open_registry(registry_root, namespace)
    expected: Any = UNSET if expect is None else None if expect == "none" else check_version(expect)
    before = registry.alias(name, alias).version
    state = registry.promote(name, check_version(version), alias, expect=expected)
    if fmt == "json":
        emit_json({"name": name, "alias": alias, "version": state.version, "previous": before})
    else:
        err.print(f"{render.printable(name)}@{alias}: {before or '-'} -> {state.version}", markup=False)


@models.command()
@click.argument("ref")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@registry_option
@namespace_option
@output_option
@handle_errors
def download(ref: str, directory: Path, registry_root: str | None, namespace: str, fmt: str) -> None:
    """Unpack the model of REF (NAME, NAME@VERSION, NAME@ALIAS) into DIRECTORY."""
    registry = open_registry(registry_root, namespace)
    found, target = registry.download(parse_ref(ref), directory)
    if fmt == "json":
        emit_json({"name": found.name, "version": found.version, "directory": str(target)})
    else:
        err.print(f"{render.printable(found.name)}@{found.version} unpacked into {render.printable(target)}",
                  markup=False)
