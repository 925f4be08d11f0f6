"""HTTP routes of the tenants service."""
