"""Root test configuration: telemetry off, shared session fixtures from tests/support."""

import os

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")

pytest_plugins = ["support.example", "support.gitlab", "support.prefect_server", "support.postgres_server",
                  "support.s3_server"]
