"""Session fixtures: a real Prefect server and worker on 127.0.0.1 (placeholder)."""
