"""The Hugging Face Hub without a network: pushes go through huggingface_hub's real `HfApi` with the HTTP
layer replaced at its transport boundary (`set_client_factory` with an httpx mock transport that keeps
repos, commits and tags as the Hub would), and pulls come from a cache laid out as huggingface_hub lays
it out. Checked: the exact files, card and tags a push makes, LeRobot's version resolution, and
`hf://` policies loading and acting like their local bundle."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from pathlib import Path

import httpx2
import numpy as np
import pytest
import yaml
from hub_cache import fill_hub_cache, offline_cache

from jrobot.hub import HubError, choose_version, dataset_revision, push_bundle, push_dataset

COMMIT = "1234567890abcdef1234567890abcdef12345678"


class FakeHub:
    """The Hub endpoints `HfApi` calls to create repos, upload, list refs and (re)tag."""

    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}  # "datasets/u/r" -> {"files", "tags", "commits", "private"}
        self.requests: list[tuple[str, str]] = []

    def repo(self, kind: str, repo_id: str) -> dict:
        return self.repos.setdefault(
            f"{kind}/{repo_id}", {"files": {}, "tags": {}, "commits": [], "visibility": None}
        )

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path, method = request.url.path, request.method
        self.requests.append((method, path))
        if path == "/api/repos/create":
            body = json.loads(request.content)
            kind = {"dataset": "datasets", None: "models", "model": "models"}[body.get("type")]
            repo = self.repo(kind, f"{body['organization']}/{body['name']}")
            repo["visibility"] = body.get("visibility")
            prefix = "datasets/" if kind == "datasets" else ""
            url = f"https://huggingface.co/{prefix}{body['organization']}/{body['name']}"
            return httpx2.Response(200, json={"url": url})
        if path == "/api/validate-yaml":  # (huggingface_hub asks before committing a README.md)
            body = json.loads(request.content)
            ok = isinstance(yaml.safe_load(body["content"].split("---\n")[1]), dict)
            return httpx2.Response(
                200 if ok else 400, json={"errors": [] if ok else ["not YAML"], "warnings": []}
            )
        m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/(preupload|commit|tag|refs)(?:/(.+))?$", path)
        if m is None:
            return httpx2.Response(404, json={"error": f"not faked: {method} {path}"})
        kind, repo_id, action, rest = m.groups()
        repo = self.repo(kind, repo_id)
        if action == "preupload":
            files = json.loads(request.content)["files"]
            return httpx2.Response(
                200,
                json={
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                },
            )
        if action == "commit":
            lines = [json.loads(line) for line in request.content.decode().splitlines() if line.strip()]
            for op in lines:
                if op["key"] == "file":
                    repo["files"][op["value"]["path"]] = base64.b64decode(op["value"]["content"])
            oid = hashlib.sha1(f"{repo_id}{len(repo['commits'])}".encode()).hexdigest()
            repo["commits"].append(oid)
            prefix = "datasets/" if kind == "datasets" else ""
            url = f"https://huggingface.co/{prefix}{repo_id}/commit/{oid}"
            return httpx2.Response(200, json={"commitUrl": url, "commitOid": oid, "success": True})
        if action == "refs":
            tags = [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": c} for t, c in repo["tags"].items()]
            head = repo["commits"][-1] if repo["commits"] else "0" * 40
            return httpx2.Response(
                200,
                json={
                    "branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": head}],
                    "tags": tags,
                    "converts": [],
                },
            )
        if action == "tag" and method == "DELETE":
            repo["tags"].pop(rest)
            return httpx2.Response(200, json={})
        if action == "tag":
            tag = json.loads(request.content)["tag"]
            if tag in repo["tags"]:
                return httpx2.Response(409, json={"error": "tag exists"})
            repo["tags"][tag] = repo["commits"][-1]
            return httpx2.Response(200, json={})
        return httpx2.Response(404, json={"error": "not faked"})


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    fake = FakeHub()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token")
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(fake)))
    huggingface_hub.close_session()
    yield fake
    huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)
    huggingface_hub.close_session()


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_a_dataset_is_pushed_as_lerobot_pushes_it(hub, v30_dir, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(v30_dir, root)
    (root / "images/observation.images.front/episode_000000").mkdir(parents=True)
    (root / "images/observation.images.front/episode_000000/frame_000000.png").write_bytes(b"png")
    (root / ".jrobot").mkdir()
    (root / ".jrobot/lock").write_text("1")
    expected = {f for f in _files(root) if not f.startswith(("images/", ".jrobot/"))}

    url = push_dataset(root, "me/pick_cube", private=True)
    repo = hub.repos["datasets/me/pick_cube"]
    assert url == "https://huggingface.co/datasets/me/pick_cube" and repo["visibility"] == "private"
    assert set(repo["files"]) == expected | {"README.md"}
    for f in expected:
        assert repo["files"][f] == (root / f).read_bytes(), f
    card = repo["files"]["README.md"].decode()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    assert "task_categories:\n- robotics" in front and "- LeRobot" in front and "- so101_follower" in front
    assert "configs:\n- config_name: default\n  data_files: data/*/*.parquet" in front
    assert json.loads(body.split("```json\n")[1].split("```")[0]) == json.loads(
        (root / "meta/info.json").read_text()
    )
    assert repo["tags"] == {"v3.0": repo["commits"][-1]}

    first_tagged = repo["tags"]["v3.0"]
    push_dataset(root, "me/pick_cube", push_videos=False)
    assert repo["tags"]["v3.0"] == repo["commits"][-1] != first_tagged  # the tag moved to the new commit
    assert ("DELETE", "/api/datasets/me/pick_cube/tag/v3.0") in hub.requests
    pushed_twice = [p for p in repo["files"] if p.startswith("videos/")]
    assert pushed_twice  # (from the first push; the second one sent none)
    commit_bodies = len(repo["commits"])
    assert commit_bodies == 4


def test_push_without_videos_and_offline(hub, v30_dir, tmp_path, monkeypatch):
    push_dataset(v30_dir, "me/no_videos", push_videos=False)
    files = hub.repos["datasets/me/no_videos"]["files"]
    assert files and not any(f.startswith("videos/") for f in files)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(hub.requests)
    with pytest.raises(
        HubError, match=r"the Hugging Face Hub is offline \(HF_HUB_OFFLINE=1\); the dataset is saved"
    ):
        push_dataset(v30_dir, "me/x")
    assert len(hub.requests) == before  # nothing sent
    with pytest.raises(HubError, match="not a Hugging Face Hub repo id"):
        push_dataset(v30_dir, "../x")
    with pytest.raises(HubError, match="not a dataset to push"):
        push_dataset(tmp_path, "me/x")


@pytest.mark.parametrize(
    ("tags", "answer"),
    [
        (["v2.1", "v3.0", "v3.1"], "v3.0"),  # the exact version
        (["v3.1"], HubError),  # a newer minor only: not readable as v3.0
        (["v2.0", "v2.1", "main-backup"], "convert it with `python -m data_tools.convert_lerobot`"),
        (["v4.0"], "update jrobot"),
        ([], "no version tag"),
    ],
)
def test_dataset_versions_resolve_as_lerobot_resolves_them(tags, answer):
    if answer is HubError or not answer.startswith("v"):
        with pytest.raises(HubError, match=None if answer is HubError else re.escape(answer)):
            choose_version(tags, "me/ds")
    else:
        assert choose_version(tags, "me/ds") == answer
    assert choose_version(["v3.0", "v2.9"], "me/ds", target="v3.2") == "v3.0"  # highest compatible minor


def test_a_pulled_dataset_asks_the_hub_for_its_version_tag(hub, v30_dir):
    push_dataset(v30_dir, "me/tagged")
    assert dataset_revision("me/tagged", None) == "v3.0"
    assert dataset_revision("me/tagged", "main") == "main"  # an explicit revision wins


def test_a_bundle_is_pushed_with_its_model_card(hub, act_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(act_bundle, bundle)
    (bundle / "eval.json").write_text(json.dumps({"success_rate": 0.96, "episodes": 50}))
    url = push_bundle(bundle, "me/act_so101", dataset="me/pick_cube")
    repo = hub.repos["models/me/act_so101"]
    assert url == "https://huggingface.co/me/act_so101"
    assert set(repo["files"]) == _files(bundle) | {"README.md"}
    card = repo["files"]["README.md"].decode()
    assert "library_name: jrobot" in card and "- act" in card and "datasets:\n- me/pick_cube" in card
    assert "python -m jrobot.run --policy hf://me/act_so101" in card and '"success_rate": 0.96' in card
    assert "| `observation.state` | float32 | [6] |" in card
    with pytest.raises(HubError, match="not a policy bundle to push"):
        push_bundle(tmp_path, "me/x")


def test_an_hf_policy_loads_from_the_cache_and_acts_as_its_bundle(act_bundle, tmp_path, monkeypatch):
    from jrobot.cli import CliError
    from jrobot.runtime.policy import BundlePolicy
    from jrobot.runtime.sources import open_policy

    cache = offline_cache(monkeypatch, tmp_path / "hf" / "hub")
    snapshot = fill_hub_cache(
        act_bundle, cache, "me/act_so101", repo_type="model", commit=COMMIT, refs=("main", "v1")
    )
    assert (snapshot / "policy.json").is_symlink()
    local, hubbed = BundlePolicy(act_bundle), open_policy("hf://me/act_so101")
    pinned = open_policy("hf://me/act_so101@v1")
    from jrobot.policies.spec import FeatureType

    rng = np.random.default_rng(0)
    obs = {}
    for key, feat in local.spec.input_features.items():
        if feat.type == FeatureType.VISUAL:
            c, h, w = feat.shape
            obs[key] = rng.integers(0, 255, (1, h, w, c), dtype=np.uint8)
        elif feat.type == FeatureType.STATE:
            obs[key] = rng.normal(size=(1, *feat.shape)).astype(np.float32)
    expected = local.predict(obs)
    np.testing.assert_array_equal(hubbed.predict(obs), expected)
    np.testing.assert_array_equal(pinned.predict(obs), expected)
    with pytest.raises(
        CliError, match=r"me/other: the policy is not in the Hugging Face cache and the Hub is offline"
    ):
        open_policy("hf://me/other")
    with pytest.raises(CliError, match="not a Hugging Face Hub repo id"):
        open_policy("hf://../../etc")


def test_export_takes_a_lerobot_checkpoint_by_its_hub_id(shared_dir, tmp_path, monkeypatch):
    from jrobot.cli import CliError
    from jrobot.train.export import lerobot_checkpoint

    checkpoint = shared_dir / "fixtures/parity/act_so101_tiny/pretrained_model"
    cache = offline_cache(monkeypatch, tmp_path / "hf" / "hub")
    snapshot = fill_hub_cache(checkpoint, cache, "lerobot/act_tiny", repo_type="model", commit=COMMIT)
    assert lerobot_checkpoint("lerobot/act_tiny").resolve() == snapshot.resolve()
    assert lerobot_checkpoint(str(checkpoint)) == checkpoint
    with pytest.raises(CliError, match=r"no such folder \(and not a Hub model id"):
        lerobot_checkpoint(str(tmp_path / "nope"))
    with pytest.raises(
        CliError, match="lerobot/missing: the LeRobot checkpoint is not in the Hugging Face cache"
    ):
        lerobot_checkpoint("lerobot/missing")
