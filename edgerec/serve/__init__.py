"""`edgerec serve`: the library over HTTP (starlette + uvicorn + prometheus-client, the `[serve]` extra).

Only ``app`` and ``server`` import those packages, and only ``edgerec serve`` imports them:
``import edgerec`` and ``edgerec --help`` work without the extra. The other modules
(``problems``, ``bodies``, ``auth``, ``reloader``) are plain Python, so the HTTP load test
(edgerec.tools.loadtest_http) can share the server's rules without the extra.
"""
