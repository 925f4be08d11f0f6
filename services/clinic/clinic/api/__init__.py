"""HTTP routes of the clinic service: one module per resource, shared dependencies in ``deps``."""
