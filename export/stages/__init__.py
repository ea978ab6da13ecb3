"""The build pipeline: the steps that make a bundle, in the order `export/__init__.py` lists."""
