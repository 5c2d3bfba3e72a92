"""consensus layer."""
