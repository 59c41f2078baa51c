"""Prefect flows that run on workers (and in-process in embedded mode). Imports prefect."""
