"""Scale-out on Ray (the `[ray]` extra): edgerec serve as a Ray Serve deployment with replicas
(``serve_deployment``), and a Ray Data job that encodes a large catalogue into vector shards on many
workers (``encode_job``), which `edgerec build --vectors DIR` turns into a bundle (``shards``).

Only ``serve_deployment`` and ``encode_job`` import Ray, and only when run: ``shards`` is numpy and
JSON, so building from shards needs no Ray.
"""
