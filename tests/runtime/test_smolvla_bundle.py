"""A LeRobot SmolVLA checkpoint through the command line: `jrobot.export --from-lerobot`, then
`jrobot.run` offline with task strings and LeRobot's noise, reproduces LeRobot's action chunk.

The runtime tokenizes the task itself with the tokenizer the bundle carries (padded to max_length,
whatever the checkpoint's `pad_language_to`), in a process that never imports flax or transformers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jrobot.bundle import BundleError, read_info
from jrobot.commands.export import main as export_main
from jrobot.commands.run import main as run_main
from tests.conftest import PARITY_FIXTURES

REPO = Path(__file__).resolve().parents[2]
REFERENCES = [PARITY_FIXTURES / "smolvla_so101_tiny", REPO / "tests" / "fixtures" / "smolvla" / "wide_cams"]


@pytest.fixture(scope="module", params=REFERENCES, ids=lambda p: p.name)
def exported(request, tmp_path_factory):
    ref: Path = request.param
    bundle = tmp_path_factory.mktemp("bundle") / "smolvla"
    assert export_main(["--from-lerobot", str(ref / "pretrained_model"), "--out", str(bundle)]) == 0
    with np.load(ref / "cases.npz") as z:
        cases = {k: z[k] for k in z.files}
    return bundle, cases


def _npz(cases: dict[str, np.ndarray], path: Path, *, task: bool = True) -> Path:
    obs = {
        k[len("obs.") :]: v for k, v in cases.items() if k.startswith("obs.") and (task or k != "obs.task")
    }
    obs["noise"] = cases["sample.noise"]
    np.savez(path, **obs)
    return path


def test_bundle_carries_the_tokenizer(exported):
    bundle, _ = exported
    info = read_info(bundle)
    assert (
        info.language is not None and (bundle / info.language["tokenizer_dir"] / "tokenizer.json").is_file()
    )
    assert info.spec.language_keys == ("observation.language.tokens", "observation.language.attention_mask")
    assert info.stochastic and "uint8+noise" in info.variants


def test_offline_run_reproduces_lerobot(exported, tmp_path):
    bundle, cases = exported
    out = tmp_path / "out.npz"
    assert (
        run_main(
            [
                "--policy",
                str(bundle),
                "--observations",
                str(_npz(cases, tmp_path / "in.npz")),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with np.load(out) as z:
        got = z["action"]
    expected = cases["expected.action_chunk"]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * (1 + np.abs(expected).max())


def test_offline_run_without_a_task_is_a_clear_error(exported, tmp_path):
    bundle, cases = exported
    path = _npz(cases, tmp_path / "in.npz", task=False)
    with pytest.raises(BundleError, match="task instruction"):
        run_main(["--policy", str(bundle), "--observations", str(path), "--out", str(tmp_path / "o.npz")])


def test_runtime_process_imports_no_training_stack(exported, tmp_path):
    bundle, cases = exported
    path = _npz(cases, tmp_path / "in.npz")
    code = (
        "import sys\nfrom jrobot.commands.run import main\n"
        f"assert main(['--policy', {str(bundle)!r}, '--observations', {str(path)!r}, '--out', {str(tmp_path / 'o.npz')!r}]) == 0\n"
        "bad = sorted(m for m in ('flax', 'optax', 'orbax', 'grain', 'wandb', 'transformers', 'torch') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=300)
