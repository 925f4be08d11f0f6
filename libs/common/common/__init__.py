"""Thin shared library of the DentiaPro services.

What every service does the same way, and nothing else (no business logic):

- ``settings``      base settings read from the environment at start-up
- ``app``           ``create_app``: error handlers, metrics, health, logging, lifespan
- ``errors``        domain errors and their DRF-shaped responses
- ``db``            SQLAlchemy engines for SQLite and PostgreSQL, sessions, Alembic helpers
- ``tokens``        JWT verification against the auth service's JWKS
- ``health``        ``/health/`` (readiness) and ``/health/live``
- ``address``       the client address the gateway saw (``X-Forwarded-For`` from trusted hops)
- ``observability`` request id, one JSON log line and Prometheus metrics per request
- ``testing``       a test signing key that mints tokens (tests only)
"""

__version__ = "0.1.0"
