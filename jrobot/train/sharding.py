"""Device mesh and parameter sharding rules (big_vision style: explicit mesh, rules from the config).

The mesh has two axes: `data` (pure data parallelism: parameters replicated) and `fsdp` (data
parallelism with parameters and optimizer state sharded). The batch is split over both. Parameters are
sharded by rules matched against their path: `fsdp` shards a leaf's largest dimension divisible by
the fsdp axis size (small leaves stay replicated, they are not worth the collectives), `replicate`
keeps it whole. Rules are (regex, rule) pairs tried in order; the first match wins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXES = ("data", "fsdp")
DEFAULT_RULES: tuple[tuple[str, str], ...] = ((".*", "fsdp"),)


def make_mesh(data: int = -1, fsdp: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp) mesh over all devices; -1 on one axis takes whatever the other leaves."""
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    if data == -1 and fsdp == -1:
        raise ValueError("mesh: at most one of data/fsdp may be -1")
    if data == -1:
        if n % fsdp:
            raise ValueError(f"mesh: fsdp={fsdp} does not divide the {n} devices")
        data = n // fsdp
    elif fsdp == -1:
        if n % data:
            raise ValueError(f"mesh: data={data} does not divide the {n} devices")
        fsdp = n // data
    if data * fsdp != n:
        raise ValueError(f"mesh: data={data} x fsdp={fsdp} != {n} devices")
    try:
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh((data, fsdp), devices=devices)
    except Exception:  # CPU devices / odd topologies: plain row-major order is fine
        grid = np.asarray(devices).reshape(data, fsdp)
    return Mesh(grid, ("data", "fsdp"))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def _path_str(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def _fsdp_spec(shape: tuple[int, ...], axis_size: int, min_size: int) -> PartitionSpec:
    if axis_size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return PartitionSpec()
    order = sorted(range(len(shape)), key=lambda i: -shape[i])
    for i in order:
        if shape[i] % axis_size == 0:
            spec = [None] * len(shape)
            spec[i] = "fsdp"
            return PartitionSpec(*spec)
    return PartitionSpec()


def param_shardings(
    tree: Any, mesh: Mesh, rules: Sequence[tuple[str, str]] = DEFAULT_RULES, min_fsdp_size: int = 2**14
) -> Any:
    """NamedShardings for every leaf of `tree` (arrays or ShapeDtypeStructs) following `rules`."""
    compiled = [(re.compile(pat), rule) for pat, rule in rules]
    fsdp_size = mesh.shape["fsdp"]

    def one(path, leaf):
        name = _path_str(path)
        shape = tuple(getattr(leaf, "shape", ()))
        for pat, rule in compiled:
            if pat.fullmatch(name) or pat.search(name):
                if rule == "replicate":
                    return NamedSharding(mesh, PartitionSpec())
                if rule == "fsdp":
                    return NamedSharding(mesh, _fsdp_spec(shape, fsdp_size, min_fsdp_size))
                raise ValueError(f"unknown sharding rule {rule!r} for {name} (use 'fsdp' or 'replicate')")
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree_util.tree_map_with_path(one, tree)


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
) -> None:
    """Join a multi-host run when asked; a no-op for single-process runs.

    With `coordinator` (host:port of process 0) the process count and id must be given (plain machines,
    including several processes on one localhost). `auto=True` lets `jax.distributed.initialize()`
    discover a TPU pod, SLURM or Open MPI allocation by itself.
    """
    if coordinator is None and not auto:
        return
    if jax.distributed.is_initialized():
        return
    if coordinator is not None:
        if num_processes is None or process_id is None:
            raise ValueError("multi-host: --coordinator_address needs --num_processes and --process_id")
        # CPU devices need a collectives backend for cross-process computations (harmless elsewhere).
        # Must be set before the backends initialize, so no jax.devices()/default_backend() before here.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )
    else:
        jax.distributed.initialize()
