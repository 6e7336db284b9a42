"""Prefect tasks: thin wrappers that connect the core (``people_relation``) to files, models,
servers and trackers, one module per pipeline stage. The flows in ``flows/`` compose them."""
