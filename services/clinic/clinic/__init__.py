"""DentiaPro clinic service: cabinets, patients and consultations, one schema per tenant."""

__version__ = "0.1.0"
