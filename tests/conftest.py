"""Root test configuration: telemetry off, shared session fixtures from tests/support."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
if "RESCUE_CACHE_DIR" not in os.environ:  # the manifest/parse cache of this session only
    os.environ["RESCUE_CACHE_DIR"] = tempfile.mkdtemp(prefix="rescue-test-cache-")
    atexit.register(shutil.rmtree, os.environ["RESCUE_CACHE_DIR"], True)

pytest_plugins = ["support.example", "support.gitlab", "support.prefect_server", "support.postgres_server",
                  "support.s3_server"]
