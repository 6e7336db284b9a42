"""Prefect flows, one per pipeline step; each is also a command: ``python -m flows.<step>``."""

import tasks  # noqa: F401  (applies the offline defaults before Prefect is imported)
