"""The pure core: plain functions over plain data. No Dagster, no HTTP clients."""
