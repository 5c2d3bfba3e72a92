"""tests layer."""
