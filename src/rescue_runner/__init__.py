"""rescue-runner: declarative, reviewed and automatic rescue reruns of dbt models."""

__version__ = "0.1.0"
