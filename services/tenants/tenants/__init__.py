"""DentiaPro tenant registry: superuser-only CRUD and internal tenant resolution."""

__version__ = "0.1.0"
