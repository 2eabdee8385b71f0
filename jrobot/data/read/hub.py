"""Resolve a dataset source: a local folder, or a Hugging Face Hub dataset id fetched with
`huggingface_hub.snapshot_download` (cached; nothing is downloaded when the folder exists locally).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from jrobot.data.errors import DatasetError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_dataset(
    source: str | os.PathLike[str], *, revision: str | None = None, cache_dir: str | None = None
) -> Path:
    """A local dataset folder for `source`.

    A path that exists is used as is. Otherwise `source` must look like `owner/name` and is
    downloaded from the Hub (repo type "dataset"): `revision`, else the dataset's version tag LeRobot's
    way (`jrobot.hub.choose_version`). Offline (`HF_HUB_OFFLINE=1`, no network) the cache answers, and
    not cached gives a DatasetError saying so.
    """
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DatasetError(f"{path}: is a file, not a dataset folder")
        return path
    text = os.fspath(source)
    if not _REPO_ID.match(text) or text.startswith((".", "/", "~")):
        raise DatasetError(
            f"{text}: no such dataset folder (and not a Hugging Face Hub id like 'owner/name')"
        )
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError as e:  # pragma: no cover - huggingface_hub is a dependency
        raise DatasetError(
            f"{text}: not a local folder, and huggingface_hub is not installed to download it"
        ) from e
    from jrobot.hub import CODEBASE_VERSION, HubError, dataset_revision

    try:
        revision = dataset_revision(text, revision)  # online: the compatible version tag, as LeRobot
        if revision is None:  # offline: the version tag if it was downloaded, else what the cache has
            try:
                local = snapshot_download(
                    text, repo_type="dataset", revision=CODEBASE_VERSION, cache_dir=cache_dir
                )
            except LocalEntryNotFoundError:
                local = snapshot_download(text, repo_type="dataset", cache_dir=cache_dir)
        else:
            local = snapshot_download(text, repo_type="dataset", revision=revision, cache_dir=cache_dir)
    except HubError as e:
        raise DatasetError(str(e)) from e
    except LocalEntryNotFoundError as e:
        why = (
            "the Hugging Face Hub is offline (HF_HUB_OFFLINE=1)"
            if constants.HF_HUB_OFFLINE
            else "the Hub cannot be reached"
        )
        raise DatasetError(
            f"{text}: not a local folder and not in the Hugging Face cache, and {why}; "
            "pass a local dataset path or go online"
        ) from e
    except RepositoryNotFoundError as e:
        raise DatasetError(f"{text}: no such dataset on the Hugging Face Hub (or it is private)") from e
    except (HfHubHTTPError, OSError) as e:  # includes OfflineModeIsEnabled and connection errors
        raise DatasetError(f"{text}: download from the Hugging Face Hub failed ({e})") from e
    return Path(local)
