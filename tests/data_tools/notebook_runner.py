"""Execute a notebook top to bottom with nbclient, papermill-style parameters, in this interpreter.

The kernel is started from a kernelspec written to a temporary folder whose argv is
`sys.executable -m ipykernel_launcher`: it is the test's own virtual environment on any machine, even
one where `make test` has just created .venv and no Jupyter kernel was ever registered.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

KERNEL_NAME = "jrobot-test-python"


def inject_parameters(nb: Any, params: Mapping[str, Any]) -> None:
    """Papermill's convention: a cell tagged "injected-parameters" right after the "parameters" cell."""
    at = next(
        (i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None
    )
    if at is None:
        raise AssertionError("the notebook has no cell tagged 'parameters'")
    source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(at + 1, cell)


def run_notebook(
    path: Path, params: Mapping[str, Any], tmp: Path, timeout: int = 600, output: Path | None = None
) -> Any:
    """Run `path` with `params` injected; returns the executed notebook (raises on any cell error)."""
    nb = nbformat.read(path, as_version=4)
    inject_parameters(nb, params)
    spec_dir = tmp / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "jrobot test kernel",
                "language": "python",
            }
        )
    )
    km = KernelManager(
        kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp / "kernels")])
    )
    client = NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        if km.has_kernel:  # nbclient leaves a kernel it did not create itself running
            km.shutdown_kernel(now=True)
        if output is not None:
            nbformat.write(nb, output)
    return nb
