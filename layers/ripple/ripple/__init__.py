"""Ripple: the shared package behind every Ripple Lambda (deployed as one layer)."""
