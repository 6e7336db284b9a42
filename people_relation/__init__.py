"""Core domain logic for people-relation classification with GRPO.

Pure functions only: labels, prompt, completion parsing, rewards, data validation,
reports and splits. Nothing here imports Prefect, MLflow, DVC or torch, so every piece
can be unit-tested in milliseconds and reused by any orchestration layer.
"""
