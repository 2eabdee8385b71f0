"""Torch state_dict <-> Flax NNX, by module path, with strict key checking.

Why: LeRobot loads weights with `strict=False` and only logs missing/unexpected keys, so a renamed layer
silently keeps random weights. Here every expected key must be present with the right shape, and every
key in the file must be used (or explicitly ignored); violations raise one error listing all of them.

How keys are formed: jrobot modules are named exactly like LeRobot's torch modules, so the torch key of a
leaf is its NNX path joined with "." (list indices included: `layers.0.self_attn...`). Each module
contributes leaves according to its type:
- `nnx.Linear`: weight (out, in) = kernel.T, bias.
- `nnx.Conv`: weight (O, I, *k) <- kernel (*k, I, O); `nnx.ConvTranspose` (transpose_kernel=True):
  weight (I, O, *k) <- kernel (*k, O, I); bias.
- `nnx.LayerNorm` / `nnx.GroupNorm`: weight = scale, bias.
- `nnx.Embed`: weight = embedding.
- any module with a `torch_leaves()` method: that method's mapping, and the walk does not descend into
  it (the module owns its whole subtree, e.g. attention with a packed `in_proj_weight`).
- otherwise: each direct `nnx.Variable` attribute maps to its attribute name unchanged (buffers such as
  `running_mean` or `vae_encoder_pos_enc`), then the walk recurses into child modules.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.errors import InputError


@dataclasses.dataclass(frozen=True)
class TorchLeaf:
    """One torch tensor: its torch-layout shape, a getter and a setter (both in torch layout)."""

    shape: tuple[int, ...]
    get: Callable[[], np.ndarray]
    set: Callable[[np.ndarray], None]


def variable_leaf(var: nnx.Variable, perm: tuple[int, ...] | None = None) -> TorchLeaf:
    """A leaf that is `var` transposed by `perm` (torch = value.transpose(perm))."""
    shape = tuple(var.shape)
    if perm is None:
        torch_shape = shape
        inv = None
    else:
        torch_shape = tuple(shape[p] for p in perm)
        inv = tuple(int(i) for i in np.argsort(perm))

    def get() -> np.ndarray:
        v = np.asarray(var.get_value())
        return v if perm is None else np.ascontiguousarray(v.transpose(perm))

    def set_(x: np.ndarray) -> None:
        x = np.asarray(x)
        value = x if inv is None else x.transpose(inv)
        var.set_value(jnp.asarray(value, dtype=var.dtype))

    return TorchLeaf(torch_shape, get, set_)


def linear_leaves(m: nnx.Linear) -> dict[str, TorchLeaf]:
    out = {"weight": variable_leaf(m.kernel, (1, 0))}
    if m.bias is not None:
        out["bias"] = variable_leaf(m.bias)
    return out


def conv_leaves(m: nnx.Conv | nnx.ConvTranspose) -> dict[str, TorchLeaf]:
    if isinstance(m, nnx.ConvTranspose) and not m.transpose_kernel:
        raise ValueError(
            "ConvTranspose needs transpose_kernel=True to match torch's (I, O, *k) weight layout"
        )
    nd = m.kernel.ndim - 2
    perm = (nd + 1, nd, *range(nd))
    out = {"weight": variable_leaf(m.kernel, perm)}
    if m.bias is not None:
        out["bias"] = variable_leaf(m.bias)
    return out


def norm_leaves(m: nnx.LayerNorm | nnx.GroupNorm) -> dict[str, TorchLeaf]:
    out = {}
    if m.scale is not None:
        out["weight"] = variable_leaf(m.scale)
    if m.bias is not None:
        out["bias"] = variable_leaf(m.bias)
    return out


def module_leaves(m: nnx.Module) -> tuple[dict[str, TorchLeaf], bool]:
    """(this module's own leaves, whether the walk should still recurse into its children)."""
    custom = getattr(m, "torch_leaves", None)
    if callable(custom):
        return custom(), False
    if isinstance(m, nnx.Linear):
        return linear_leaves(m), False
    if isinstance(m, nnx.Conv | nnx.ConvTranspose):
        return conv_leaves(m), False
    if isinstance(m, nnx.LayerNorm | nnx.GroupNorm):
        return norm_leaves(m), False
    if isinstance(m, nnx.Embed):
        return {"weight": variable_leaf(m.embedding)}, False
    own = {
        str(name): variable_leaf(child)
        for name, child in nnx.iter_children(m)
        if isinstance(child, nnx.Variable)
    }
    return own, True


def collect_leaves(root: nnx.Module, prefix: str = "") -> dict[str, TorchLeaf]:
    """Every torch key under `root` (in definition order) -> its leaf."""
    out: dict[str, TorchLeaf] = {}
    own, recurse = module_leaves(root)
    for name, leaf in own.items():
        out[prefix + name] = leaf
    if recurse:
        for name, child in nnx.iter_children(root):
            if isinstance(child, nnx.Module):
                out.update(collect_leaves(child, f"{prefix}{name}."))
    return out


def state_dict(root: nnx.Module, prefix: str = "") -> dict[str, np.ndarray]:
    """The module's weights as a torch-layout state_dict of numpy arrays."""
    return {k: leaf.get() for k, leaf in collect_leaves(root, prefix).items()}


@dataclasses.dataclass
class LoadReport:
    """What a load did; `ok` is False when anything was missing, unexpected or the wrong shape."""

    source: str
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    ignored: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # key, expected, got

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 30) -> str:
        def show(keys: list[str]) -> str:
            more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
            return ", ".join(keys[:limit]) + more

        lines = [f"{self.source}: {len(self.loaded)} tensors loaded"]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): {show(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): {show(self.unexpected)}")
        if self.mismatched:
            mm = [f"{k} expected {e} got {g}" for k, e, g in self.mismatched]
            lines.append(f"  shape mismatch ({len(mm)}): {show(mm)}")
        return "\n".join(lines)


class StateDictError(ValueError, InputError):
    """Raised by a strict load; `.report` has the full lists."""

    def __init__(self, report: LoadReport):
        super().__init__(report.describe())
        self.report = report


def load_state_dict(
    root: nnx.Module,
    sd: Mapping[str, Any],
    *,
    prefix: str = "",
    strict: bool = True,
    ignore: Iterable[str] = (),
    source: str = "state dict",
) -> LoadReport:
    """Copy a torch-layout state_dict into `root` in place.

    `ignore`: regular expressions (re.search) for keys in `sd` that are allowed to be unused, e.g.
    `r"\\.num_batches_tracked$"` or `r"^fc\\."`. With `strict` (default) any missing, unexpected or
    mis-shaped key raises `StateDictError` before anything is written; otherwise matching keys are
    loaded and the report says what was skipped.
    """
    leaves = collect_leaves(root, prefix)
    patterns = [re.compile(p) for p in ignore]
    missing = [k for k in leaves if k not in sd]
    unexpected, ignored = [], []
    for k in sd:
        if k in leaves:
            continue
        (ignored if any(p.search(k) for p in patterns) else unexpected).append(k)
    mismatched = []
    for k, leaf in leaves.items():
        if k in sd:
            got = tuple(np.shape(sd[k]))
            if got != leaf.shape:
                mismatched.append((k, leaf.shape, got))
    bad = {k for k, _, _ in mismatched}
    loadable = [k for k in leaves if k in sd and k not in bad]
    report = LoadReport(source, loadable, missing, unexpected, ignored, mismatched)
    if strict and not report.ok:
        raise StateDictError(report)
    for k in loadable:
        value = np.asarray(sd[k])
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            value = value.astype(np.float32)
        leaves[k].set(value)
    return report


def count_leaves(root: nnx.Module) -> int:
    """Number of scalars across the torch leaves (LeRobot's parameter + saved-buffer count)."""
    return int(sum(int(np.prod(leaf.shape)) for leaf in collect_leaves(root).values()))
