"""Measurement and display: `edgerec bench`, `edgerec loadtest`, progress bars, timing helpers.

Nothing on the query path imports this package.
"""
