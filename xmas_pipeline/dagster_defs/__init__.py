"""Dagster wiring: resources, assets, checks, sensors, the schedule. Thin by design."""
