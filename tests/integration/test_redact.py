"""No credential from a URL's query string is stored in lineage.

A real git repository whose ``origin`` carries a token in its query (and in its
userinfo), ``--data`` URIs that are S3/GCS pre-signed, Azure SAS, GitLab
``private_token`` and OAuth-fragment URLs, pushed with the CLI to the local store
and to a real registry:2: no secret appears in any byte either store holds (the
manifest annotations, the config's Labels, every blob), nor in what the CLI prints;
the parameters that only describe the object are kept.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
import test_lineage
from helpers.cli import Cli
from test_lineage import git
from test_lineage_push import manifest_and_config, small_model

from modelreg import api
from modelreg.lineage import CodeInfo, DataRef, Lineage
from modelreg.redact import is_credential_parameter, strip_query_credentials
from modelreg.store import Stores

git_repo = test_lineage.repo  # the fixture: a committed work tree


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        (
            "https://b.s3.amazonaws.com/t.parquet?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIA%2F20260101%2Fus-east-1&X-Amz-Date=20260101T000000Z"
            "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FwoG"
            "&X-Amz-Signature=abcdef",
            "https://b.s3.amazonaws.com/t.parquet?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host",
        ),
        (
            "https://a.blob.core.windows.net/c/d.csv?sv=2022-11-02&sp=r&se=2030-01-01&sig=x%3D",
            "https://a.blob.core.windows.net/c/d.csv?sv=2022-11-02&sp=r&se=2030-01-01",
        ),
        ("https://gitlab.com/g/p.git?private_token=glpat-1", "https://gitlab.com/g/p.git"),
        ("https://h/x?AWSAccessKeyId=AK&Expires=1&Signature=s", "https://h/x?Expires=1"),
        ("https://h/x?X-Goog-Credential=c&X-Goog-Signature=s&alt=media", "https://h/x?alt=media"),
        ("https://h/p?apiKey=1&api_key=2&client_secret=3&password=4&page=3", "https://h/p?page=3"),
        ("https://h/p?access_token=t;auth=a", "https://h/p"),
        ("https://h/p#access_token=t&state=1", "https://h/p#state=1"),
        ("https://h/p#section-2", "https://h/p#section-2"),
        ("s3://bucket/raw/events", "s3://bucket/raw/events"),
        ("https://h/p?versionId=3&monkey=1&tokenizer=bpe", "https://h/p?versionId=3&monkey=1&tokenizer=bpe"),
    ],
)  # fmt: skip
def test_credential_parameters_are_dropped_and_the_rest_kept(url: str, stored: str) -> None:
    assert strip_query_credentials(url) == stored


def test_credential_parameter_names() -> None:
    for name in ("X-Amz-Signature", "sig", "private_token", "ACCESS_TOKEN", "SharedKey", "tokens"):
        assert is_credential_parameter(name), name
    for name in ("sv", "se", "Expires", "X-Amz-SignedHeaders", "version", "design", "keyboard"):
        assert not is_credential_parameter(name), name


def every_stored_byte(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_push_stores_no_query_credential(
    target: str,
    cli: Cli,
    git_repo: Path,
    tmp_path: Path,
    stores: Stores,
    request: pytest.FixtureRequest,
) -> None:
    names = ("git", "user", "s3", "sts", "sas", "gl", "oauth")
    secret = {name: f"{name}-{secrets.token_hex(8)}" for name in names}
    git(
        git_repo, "remote", "add", "origin",
        f"https://oauth2:{secret['user']}@gitlab.example.com/ml/fraud.git?private_token={secret['git']}",
    )  # fmt: skip
    data = [
        "https://b.s3.amazonaws.com/train.parquet?X-Amz-Expires=3600"
        f"&X-Amz-Credential=AKIA{secret['s3']}&X-Amz-Security-Token={secret['sts']}"
        f"&X-Amz-Signature={secret['s3']}",
        f"https://acct.blob.core.windows.net/c/eval.csv?sv=2022-11-02&sp=r&sig={secret['sas']}",
        f"https://gitlab.example.com/api/v4/projects/1/repository/files/x?ref=main&private_token={secret['gl']}",
        f"https://h.example/labels.json#access_token={secret['oauth']}",
    ]  # fmt: skip
    args = ["push", str(small_model(tmp_path / "model")), target, "--code-dir", str(git_repo)]
    for uri in data:
        args += ["--data", uri]
    pushed = cli(*args, "--json")
    assert pushed.returncode == 0, pushed.stderr
    shown = cli("lineage", f"{target}:v1", "--json")
    assert shown.returncode == 0, shown.stderr

    printed = pushed.stdout + pushed.stderr + shown.stdout
    manifest, config = manifest_and_config(stores, f"{target}:v1")
    if target.startswith("127.0.0.1:"):
        root = request.getfixturevalue("registry").root
    else:
        root = Path(os.environ["MODELREG_HOME"])
    stored = every_stored_byte(root)
    for value in secret.values():
        assert value not in printed
        assert value not in json.dumps(manifest) + json.dumps(config)
        assert value.encode() not in stored

    facts = json.loads(shown.stdout)
    assert facts["code"]["remote"] == "https://gitlab.example.com/ml/fraud.git"
    annotations = manifest["annotations"]
    assert annotations["org.opencontainers.image.source"] == facts["code"]["remote"]
    assert annotations["dev.modelreg.code.remote"] == facts["code"]["remote"]
    assert config["config"]["Labels"] == annotations
    assert [(ref["uri"], ref["version"]) for ref in facts["data"]] == [
        ("https://b.s3.amazonaws.com/train.parquet?X-Amz-Expires=3600", None),
        ("https://acct.blob.core.windows.net/c/eval.csv?sv=2022-11-02&sp=r", None),
        ("https://gitlab.example.com/api/v4/projects/1/repository/files/x?ref=main", None),
        ("https://h.example/labels.json", None),
    ]


def test_the_library_strips_what_its_caller_built(tmp_path: Path, stores: Stores) -> None:
    """A Lineage built in Python (not parsed from the CLI) is redacted when it is stored."""
    token = secrets.token_hex(8)
    lineage = Lineage(
        code=CodeInfo(
            commit="a" * 40,
            branch="main",
            dirty=False,
            diff_digest=None,
            remote=f"https://u:{token}@git.example/r.git?token={token}",
        ),
        data=(DataRef(f"gs://b/o?X-Goog-Signature={token}&alt=media", None, None),),
    )
    pushed = api.push(small_model(tmp_path / "m"), "libfraud", lineage=lineage, stores=stores)
    manifest, config = manifest_and_config(stores, pushed.reference)
    assert token not in json.dumps(manifest) + json.dumps(config)
    assert token.encode() not in every_stored_byte(Path(os.environ["MODELREG_HOME"]))
    assert manifest["annotations"]["dev.modelreg.code.remote"] == "https://git.example/r.git"
    assert (
        json.loads(manifest["annotations"]["dev.modelreg.data"])[0]["uri"] == "gs://b/o?alt=media"
    )
