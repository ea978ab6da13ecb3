"""Measurement: the `evaluate`, `peers` and `ann` benchmarks and the measuring tools they share."""
