"""The import rules of design.md: a recording laptop needs no jax, a robot laptop no training stack.

Two checks per rule:
- static: every `import` statement in the source, at module level or inside a function (a lazy import
  is still a dependency the moment that function runs), followed transitively through jrobot's own
  modules. `if TYPE_CHECKING:` blocks are skipped: they never run.
- dynamic: importing the layer's modules in a fresh interpreter loads none of the forbidden packages
  (this also catches imports the static check cannot see, e.g. a library that imports jax itself).
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OWN = ("jrobot", "data_tools")

JAX_STACK = {"jax", "jaxlib", "flax", "optax", "orbax", "grain"}
TRAINING_STACK = {"flax", "optax", "orbax", "grain", "wandb", "jrobot.train", "jrobot.pipeline"}

# Layers that never import jax: hardware, simulation, recording, episode data and training shards.
RECORDING_AND_DATA = [
    "jrobot.features",
    "jrobot.image_transforms",
    "jrobot.lazy_exports",
    "jrobot.pacer",
    "jrobot.cli",
    "jrobot.robot",
    "jrobot.commands.record",
    "jrobot.commands.calibrate",
    "jrobot.commands.setup_motors",
    "jrobot.commands.teleoperate",
    "jrobot.commands.replay",
    "jrobot.commands.find_joint_limits",
    "jrobot.commands.find_cameras",
    "jrobot.commands.find_port",
    "jrobot.policies.spec",
    "jrobot.policies.ensemble",
    "jrobot.language",
    "data_tools.inspect",
    "data_tools.edit",
    "data_tools.convert_lerobot",
    "data_tools.convert_rlds",
    "data_tools.export_tfds",
    "data_tools.push_dataset",
    "jrobot.hub",
    "jrobot.kinematics.so101",
    "jrobot.kinematics.ee_control",
    "jrobot.kinematics.ee_space",
    "jrobot.display",
    "data_tools.view",
    "jrobot.data.view",
    "data_tools.build_shards",
]
RECORDING_AND_DATA_PACKAGES = ["jrobot.data", "jrobot.shards", "jrobot.hw", "jrobot.sim", "jrobot.recording"]


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


@functools.cache
def imports_of(name: str) -> tuple[str, ...]:
    """Every module `name` imports anywhere in its source (own modules resolved to the deepest module)."""
    path = _module_file(name)
    if path is None:
        return ()
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    todo: deque[ast.AST] = deque([tree])
    while todo:
        node = todo.popleft()
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                anchor = parts if is_pkg else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            for a in node.names:  # `from pkg import module`
                if _module_file(f"{base}.{a.name}") is not None:
                    found.add(f"{base}.{a.name}")
        todo.extend(ast.iter_child_nodes(node))
    # Importing a.b.c runs a/__init__ and a/b/__init__ too.
    closed = set(found)
    for mod in found:
        parts = mod.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return tuple(sorted(closed))


def _forbidden(mod: str, forbidden: set[str]) -> bool:
    return any(mod == f or mod.startswith(f + ".") for f in forbidden)


def _modules_of_package(pkg: str) -> list[str]:
    root = REPO.joinpath(*pkg.split("."))
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def static_violations(modules: list[str], packages: list[str], forbidden: set[str]) -> list[str]:
    """Import chains from the given modules to a forbidden one, e.g. 'jrobot.record -> jrobot.x -> jax'."""
    starts = list(modules) + [m for p in packages for m in _modules_of_package(p)]
    bad = []
    for start in starts:
        parent = {start: None}
        queue = deque([start])
        while queue:
            mod = queue.popleft()
            for dep in imports_of(mod):
                if dep in parent:
                    continue
                parent[dep] = mod
                if _forbidden(dep, forbidden):
                    chain, m = [], dep
                    while m is not None:
                        chain.append(m)
                        m = parent[m]
                    bad.append(" -> ".join(reversed(chain)))
                elif dep.split(".")[0] in OWN:
                    queue.append(dep)
    return sorted(set(bad))


CHECK = """
import importlib, pkgutil, sys
for name in {modules!r}:
    importlib.import_module(name)
for pkg in {packages!r}:
    for info in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + "."):
        importlib.import_module(info.name)
loaded = set(sys.modules)
bad = sorted(f for f in {forbidden!r} if any(m == f or m.startswith(f + ".") for m in loaded))
print(bad)
sys.exit(1 if bad else 0)
"""


def _check(modules, packages, forbidden):
    static = static_violations(list(modules), list(packages), set(forbidden))
    assert not static, "forbidden imports (static):\n" + "\n".join(static)
    packages = [p for p in packages if _module_file(p) is not None]
    code = CHECK.format(modules=list(modules), packages=list(packages), forbidden=set(forbidden))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"forbidden imports {proc.stdout.strip()}\n{proc.stderr[-2000:]}"


def test_hardware_simulation_recording_and_data_code_never_import_jax():
    _check(RECORDING_AND_DATA, RECORDING_AND_DATA_PACKAGES, JAX_STACK)


def test_runtime_never_imports_the_training_stack():
    # transformers too: a VLA's instruction is tokenized by jrobot.language with `tokenizers` alone
    _check(
        [
            "jrobot.commands.run",
            "jrobot.commands.eval",
            "jrobot.bundle",
            "jrobot.recording.devices",
            "jrobot.language",
        ],
        ["jrobot.runtime"],
        TRAINING_STACK | {"transformers", "torch"},
    )


def test_runtime_and_server_never_import_the_training_stack():
    _check(["jrobot.commands.serve"], ["jrobot.serving"], TRAINING_STACK | {"transformers", "torch"})


def test_a_laptop_driving_its_arm_from_a_policy_server_needs_no_jax():
    # the control loop, the observation builder and the remote clients; BundlePolicy (jax) is separate
    _check(
        [
            "jrobot.runtime.loop",
            "jrobot.runtime.observations",
            "jrobot.runtime.errors",
            "jrobot.serving.client",
            "jrobot.serving.wire",
            "jrobot.serving.protocol",
        ],
        [],
        JAX_STACK,
    )


def test_policies_never_import_data_pipeline_or_hardware():
    _check(
        [],
        ["jrobot.policies"],
        {"jrobot.data", "jrobot.shards", "jrobot.pipeline", "jrobot.hw", "jrobot.train", "grain"},
    )


def test_pipeline_never_imports_policies_or_training():
    _check([], ["jrobot.pipeline"], {"jrobot.policies", "jrobot.train", "flax", "optax"})


# The checker itself must catch what it is there to catch: a lazy import inside a function, a chain
# through another own module, a relative import; and it must skip TYPE_CHECKING blocks.
@pytest.fixture
def fake_tree(tmp_path, monkeypatch):
    pkg = tmp_path / "jrobot" / "fakelayer"
    pkg.mkdir(parents=True)
    (tmp_path / "jrobot" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "lazy.py").write_text("def f():\n    import jax\n    return jax\n")
    (pkg / "chain.py").write_text("from . import middle\n")
    (pkg / "middle.py").write_text("from jrobot.fakelayer.deep import x\n")
    (pkg / "deep.py").write_text("from flax import nnx\nx = 1\n")
    (pkg / "typing_only.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import jax\nelse:\n    import json\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    imports_of.cache_clear()
    yield
    imports_of.cache_clear()


def test_static_check_sees_lazy_transitive_and_relative_imports(fake_tree):
    assert static_violations(["jrobot.fakelayer.lazy"], [], {"jax"}) == ["jrobot.fakelayer.lazy -> jax"]
    assert static_violations(["jrobot.fakelayer.chain"], [], {"flax"}) == [
        "jrobot.fakelayer.chain -> jrobot.fakelayer.middle -> jrobot.fakelayer.deep -> flax"
    ]
    assert static_violations(["jrobot.fakelayer.typing_only"], [], {"jax"}) == []
    assert "json" in imports_of("jrobot.fakelayer.typing_only")
