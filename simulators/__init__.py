"""Seeded, deterministic field-device simulators with fault injection."""
