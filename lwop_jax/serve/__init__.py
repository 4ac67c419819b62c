"""``lwop serve``: pose estimation over HTTP and WebSocket, with a live browser page.

Starlette on uvicorn (the ``serve`` extra). The modules, lowest first:

    headers.py   image size and completeness from the file header, before anything is decoded
    limits.py    the request limits and the checks of a body (status code + one-line message)
    pool.py      a bounded pool of workers, each owning its PoseEstimator; full -> 503
    detect.py    one image's bytes -> the per-image record of ``lwop infer --json`` + timings
    metrics.py   Prometheus metrics (own registry)
    service.py   what the app holds: settings, the pool, the metrics, the drain state
    openapi.py   the OpenAPI description, a static dict
    stream.py    WebSocket /v1/stream: frames in, records out, tracked per connection
    gate.py      the middleware: drain, connection limit, API key, metrics
    app.py       the Starlette app: routes, one-line JSON errors
    server.py    uvicorn with a draining SIGTERM (in-flight requests finish, new ones get 503, exit 0)
    static/      the browser page (no build step, no CDN)
"""
