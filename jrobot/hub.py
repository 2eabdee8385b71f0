"""The Hugging Face Hub: datasets and policy bundles up and down, laid out as LeRobot lays them out.

Datasets are pushed as LeRobot pushes them: the folder without `images/` (LeRobot's temporary frames)
or jrobot's working area, a dataset card whose tags and `configs` make the Hub viewer read the parquet
files, and the codebase-version tag (`v3.0`) deleted and made again on the new commit. Pulled, a
dataset resolves to that tag as LeRobot's `get_safe_version` does. Policy bundles are pushed as model
repos with a model card and read back by `hf://USER/REPO[@REVISION]` wherever a bundle folder is taken.
Nothing here imports jax: the laptop runtime reads `hf://` bundles too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from jrobot.errors import InputError

CODEBASE_VERSION = "v3.0"
HF_SCHEME = "hf://"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_VERSION_TAG = re.compile(r"^v(\d+)\.(\d+)$")
# never pushed: LeRobot's temporary image folders, jrobot's working area, editor and OS litter
DATASET_IGNORE = ["images/*", ".jrobot/*", "**/.DS_Store", "**/__pycache__/*"]


class HubError(ConnectionError, InputError):
    """The Hub refused, could not be reached, or holds nothing usable; the message says which."""


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise HubError(f"{repo_id!r} is not a Hugging Face Hub repo id like 'owner/name'")
    return repo_id


# -- datasets ----------------------------------------------------------------------------------------


def dataset_card(
    info: dict[str, Any], *, repo_id: str, license: str = "apache-2.0", tags: Iterable[str] = ()
) -> str:
    """LeRobot's dataset card: YAML (license, robotics, the LeRobot tag, parquet `configs` for the
    viewer) and meta/info.json in the body."""
    from huggingface_hub import DatasetCard, DatasetCardData

    robot = info.get("robot_type")
    data = DatasetCardData(
        license=license,
        task_categories=["robotics"],
        tags=list(dict.fromkeys(["LeRobot", "jrobot", *([robot] if robot else []), *tags])),
        configs=[{"config_name": "default", "data_files": "data/*/*.parquet"}],
    )
    body = (
        f"This dataset was recorded or converted with [jrobot](https://github.com/) in LeRobot's format "
        f"({info.get('codebase_version', CODEBASE_VERSION)}); LeRobot and jrobot load it as `{repo_id}`.\n\n"
        "## Dataset Structure\n\n[meta/info.json](meta/info.json):\n```json\n"
        f"{json.dumps(info, indent=4)}\n```\n"
    )
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def push_dataset(
    root: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    push_videos: bool = True,
    license: str = "apache-2.0",
    tags: Sequence[str] = (),
    branch: str | None = None,
    api: Any = None,
) -> str:
    """Upload the dataset folder `root` to the dataset repo `repo_id`; returns its URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from jrobot.data.format.layout import INFO_PATH

    root = Path(root)
    check_repo_id(repo_id)
    info_path = root / INFO_PATH
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HubError(f"{info_path}: not a dataset to push ({e})") from e
    if _offline():
        raise HubError(
            f"cannot push {root} to {repo_id}: the Hugging Face Hub is offline (HF_HUB_OFFLINE=1); "
            "the dataset is saved locally, push it later"
        )
    api = api or HfApi()
    ignore = DATASET_IGNORE + ([] if push_videos else ["videos/*"])
    card = dataset_card(info, repo_id=repo_id, license=license, tags=tags)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if branch:
            api.create_branch(repo_id, branch=branch, repo_type="dataset", exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(root),
            repo_type="dataset",
            revision=branch,
            ignore_patterns=ignore,
        )
        api.upload_file(
            path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id, repo_type="dataset",
            revision=branch, commit_message="Dataset card",
        )  # fmt: skip
        version = str(info.get("codebase_version", CODEBASE_VERSION))
        refs = api.list_repo_refs(repo_id, repo_type="dataset")
        if any(t.name == version for t in refs.tags):
            api.delete_tag(repo_id, tag=version, repo_type="dataset")
        api.create_tag(repo_id, tag=version, revision=branch, repo_type="dataset")
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise HubError(
            f"pushing {root} to {repo_id} failed ({e}); the dataset is saved locally, push it again later"
        ) from e
    return f"https://huggingface.co/datasets/{repo_id}"


def choose_version(tags: Iterable[str], repo_id: str, target: str = CODEBASE_VERSION) -> str:
    """LeRobot's `get_safe_version`: the tag `target` itself, else the highest `vX.Y` tag of the same
    major version with a minor version not above the target's; refused across major versions."""
    want = _VERSION_TAG.match(target)
    if want is None:
        raise ValueError(f"version {target!r} is not of the form vX.Y")
    major, minor = int(want[1]), int(want[2])
    versions = sorted((int(m[1]), int(m[2]), t) for t in tags if (m := _VERSION_TAG.match(t)))
    if not versions:
        raise HubError(
            f"{repo_id}: the dataset repo has no version tag (vX.Y); it was not pushed by LeRobot or jrobot, or "
            f"predates versioning; pass an explicit revision"
        )
    if target in {t for *_, t in versions}:
        return target
    compatible = [v for v in versions if v[0] == major and v[1] <= minor]
    if compatible:
        return compatible[-1][2]
    found = [t for *_, t in versions]
    older = [t for v_major, _, t in versions if v_major < major]
    hint = (
        "convert it with `python -m data_tools.convert_lerobot` after downloading"
        if older
        else "update jrobot to read it"
    )
    raise HubError(f"{repo_id}: versions {found} on the Hub, none compatible with {target}; {hint}")


def dataset_revision(repo_id: str, revision: str | None) -> str | None:
    """The revision to download: `revision` if given, else (online) the dataset's compatible version
    tag, else (offline) None, letting the cache decide."""
    if revision is not None or _offline():
        return revision
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        tags = [t.name for t in HfApi().list_repo_refs(repo_id, repo_type="dataset").tags]
    except RepositoryNotFoundError:
        raise
    except (HfHubHTTPError, OSError) as e:
        raise HubError(f"{repo_id}: listing the dataset's versions on the Hub failed ({e})") from e
    return choose_version(tags, repo_id)


# -- policy bundles ----------------------------------------------------------------------------------


def is_hub_policy(policy: str | os.PathLike[str]) -> bool:
    return str(policy).startswith(HF_SCHEME)


def parse_hub_policy(spec: str) -> tuple[str, str | None]:
    """`hf://USER/REPO[@REVISION]` -> (repo id, revision)."""
    body = str(spec)[len(HF_SCHEME) :] if str(spec).startswith(HF_SCHEME) else str(spec)
    repo_id, at, revision = body.partition("@")
    check_repo_id(repo_id)
    if at and not revision:
        raise HubError(f"{spec}: an empty revision after '@'")
    return repo_id, revision or None


def download_model(repo_id: str, revision: str | None = None, *, what: str = "policy") -> Path:
    """The local folder of a model repo (downloaded once, then from the cache; offline: the cache)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    check_repo_id(repo_id)
    at = f"{repo_id}@{revision}" if revision else repo_id
    try:
        return Path(snapshot_download(repo_id, repo_type="model", revision=revision))
    except LocalEntryNotFoundError as e:
        why = "the Hub is offline (HF_HUB_OFFLINE=1)" if _offline() else "the Hub cannot be reached"
        raise HubError(
            f"{at}: the {what} is not in the Hugging Face cache and {why}; go online once to download it"
        ) from e
    except RepositoryNotFoundError as e:
        raise HubError(f"{at}: no such model repo on the Hugging Face Hub (or it is private: log in)") from e
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise HubError(f"{at}: downloading the {what} failed ({e})") from e


def resolve_policy(policy: str | os.PathLike[str]) -> Path:
    """A bundle folder for a folder path or an `hf://USER/REPO[@REV]` spec."""
    if not is_hub_policy(policy):
        return Path(policy)
    return download_model(*parse_hub_policy(str(policy)))


def model_card(
    info: Any,
    *,
    repo_id: str,
    dataset: str | None = None,
    eval_report: dict[str, Any] | None = None,
    license: str = "apache-2.0",
) -> str:
    """A bundle's model card (`info`: its `jrobot.bundle.BundleInfo`): what it is, what it reads and
    writes, how to run it, and its evaluation when the bundle holds one."""
    from huggingface_hub import ModelCard, ModelCardData

    spec = info.spec
    data = ModelCardData(
        license=license,
        library_name="jrobot",
        pipeline_tag="robotics",
        tags=["jrobot", "robotics", "LeRobot", spec.type],
        datasets=[check_repo_id(dataset)] if dataset else None,
    )
    rows = [f"| `{k}` | {f.dtype} | {list(f.shape)} |" for k, f in info.features.items()]
    lines = [
        f"# {repo_id}",
        "",
        f"A {spec.type} policy exported by jrobot: its JAX parameters and the preprocessing it was trained",
        f"with. It acts at {info.fps} Hz, {spec.chunk_size} actions a chunk, {spec.n_action_steps} executed",
        "per call; it runs on a laptop CPU or is served from a GPU machine.",
        "",
        "```bash",
        f"python -m jrobot.run --policy hf://{repo_id} --robot.type=so101_follower --robot.port=/dev/ttyACM0",
        f"python -m jrobot.serve --policy hf://{repo_id}   # on a GPU machine; the laptop: --policy ws://HOST:8000",
        "```",
        "",
        "| feature | dtype | shape |",
        "|---|---|---|",
        *rows,
    ]
    if dataset:
        lines += ["", f"Trained on [{dataset}](https://huggingface.co/datasets/{dataset})."]
    if eval_report:
        lines += ["", "## Evaluation", "", "```json", json.dumps(eval_report, indent=2), "```"]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"))


def push_bundle(
    bundle: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    dataset: str | None = None,
    api: Any = None,
) -> str:
    """Upload a policy bundle folder as the model repo `repo_id`, with a model card (naming `dataset`,
    and the bundle's `eval.json` when present); returns its URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from jrobot.bundle import BundleError, read_info

    bundle = Path(bundle)
    check_repo_id(repo_id)
    try:
        info = read_info(bundle)
    except BundleError as e:
        raise HubError(f"{bundle}: not a policy bundle to push ({e})") from e
    eval_report = None
    if (bundle / "eval.json").is_file():
        try:
            eval_report = json.loads((bundle / "eval.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise HubError(f"{bundle / 'eval.json'}: not readable JSON ({e})") from e
    if _offline():
        raise HubError(
            f"cannot push {bundle} to {repo_id}: the Hugging Face Hub is offline (HF_HUB_OFFLINE=1)"
        )
    api = api or HfApi()
    card = model_card(info, repo_id=repo_id, dataset=dataset, eval_report=eval_report)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id, folder_path=str(bundle), repo_type="model", ignore_patterns=["README.md"]
        )
        api.upload_file(
            path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id, repo_type="model",
            commit_message="Model card",
        )  # fmt: skip
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise HubError(f"pushing {bundle} to {repo_id} failed ({e})") from e
    return f"https://huggingface.co/{repo_id}"
