"""The batch a flow run builds (``batch.py``, no prefect) and the Prefect flow that wraps it on workers."""
