"""The REST API (DRF)."""
