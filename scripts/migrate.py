"""``make migrate``: bring every service database to the latest revision.

Each service reads its own settings from the environment (``AUTH_DATABASE_URL``, ... or SQLite
under ``DENTIAPRO_DATA_DIR``); clinic migrates every known tenant schema. Idempotent: the
services also migrate at start-up, so this is for deployments that migrate before rolling out.
"""

import sys

import auth.db
import auth.settings
import clinic.db
import clinic.settings
import tenants.db
import tenants.settings


def main() -> int:
    steps = [
        ("tenants", lambda: tenants.db.migrate(tenants.settings.get_settings())),
        ("auth", lambda: auth.db.migrate(auth.settings.get_settings())),
        # Every tenant schema (or SQLite file) the clinic database holds.
        ("clinic", lambda: clinic.db.migrate(clinic.settings.get_settings())),
    ]
    for name, migrate in steps:
        print(f"migrating {name} ...", flush=True)
        migrate()
    print("all databases are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
