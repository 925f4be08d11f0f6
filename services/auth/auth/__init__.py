"""DentiaPro auth service: users, login, JWT tokens, signing keys."""

__version__ = "0.1.0"
