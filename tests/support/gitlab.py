"""The real GitLab production manifest from ../shared, or a clean skip when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
GITLAB_MANIFEST = REPO_ROOT.parent / "shared" / "data" / "manifests" / "gitlab-analytics.manifest.json.gz"


@pytest.fixture(scope="session")
def gitlab_manifest_path() -> Path:
    """Path of the gzipped GitLab manifest; skips the test when it is not beside the repo."""
    if not GITLAB_MANIFEST.is_file():
        pytest.skip("../shared/data/manifests/gitlab-analytics.manifest.json.gz is absent (not shipped)")
    return GITLAB_MANIFEST
