"""Writers of bundles on the device: `edgerec build` and bundle-home updates (add, remove, rebuild).

Nothing on the query path imports this package.
"""
