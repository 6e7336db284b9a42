"""Prefect flows, one per pipeline stage; each is also a command: ``python -m flows.<stage>``.

Every command starts here, so the process is configured (no telemetry, the project's log
lines in Prefect's run logs) before Prefect or MLflow is imported.
"""

from people_relation.runtime import configure

configure()
