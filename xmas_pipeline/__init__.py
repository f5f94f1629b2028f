"""xmas_pipeline: the BusOS Christmas 2025 nurture campaign as Dagster assets."""

__version__ = "0.1.0"
