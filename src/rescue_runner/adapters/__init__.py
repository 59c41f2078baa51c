"""The only modules that import dbt, prefect or git. Everything else sees plain values."""
