"""Instance types: what a job's ``spec.instance.type`` means in resources.

The built-in catalog is the default for local backends and the chart's instance
ConfigMap; a cluster may override it. Pure data, no I/O.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class InstanceType(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    cpus: float = Field(gt=0)
    memory_gib: float = Field(gt=0)
    gpus: int = Field(default=0, ge=0)
    gpu_product: str | None = None
    hourly_price: float = Field(default=0.0, ge=0)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str]] = Field(default_factory=list)


_GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
_H100 = "NVIDIA-H100-80GB-HBM3"


def _gpu(name: str, gpus: int, price_per_gpu: float = 2.5) -> InstanceType:
    return InstanceType(
        name=name, cpus=12 * gpus, memory_gib=100 * gpus, gpus=gpus, gpu_product=_H100,
        hourly_price=round(price_per_gpu * gpus, 2),
        node_selector={"nvidia.com/gpu.product": _H100}, tolerations=_GPU_TOLERATION,
    )


DEFAULT_CATALOG: dict[str, InstanceType] = {
    t.name: t
    for t in [
        InstanceType(name="local", cpus=2, memory_gib=4),
        InstanceType(name="cpu-small", cpus=2, memory_gib=8, hourly_price=0.1),
        InstanceType(name="cpu-large", cpus=16, memory_gib=64, hourly_price=0.8),
        _gpu("gpu-1x", 1), _gpu("gpu-2x", 2), _gpu("gpu-4x", 4), _gpu("gpu-8x", 8),
    ]
}


def lookup(name: str, catalog: dict[str, InstanceType] | None = None) -> InstanceType:
    """The instance type called ``name``; KeyError lists the known ones."""
    catalog = DEFAULT_CATALOG if catalog is None else catalog
    try:
        return catalog[name]
    except KeyError:
        known = ", ".join(sorted(catalog))
        raise KeyError(f"unknown instance type {name!r} (known: {known})") from None
