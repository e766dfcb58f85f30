"""ASGI entry point for servers: ``uvicorn shiyu.asgi:app``."""

import gc

from shiyu.main import create_app

app = create_app()

# Garbage collection tuned for a server that allocates many short-lived objects per
# request over a large, long-lived heap (the application, its catalogues and spatial
# indexes): what exists at start-up is frozen out of the collector's scans, and the
# young generation is collected every 10,000 net allocations instead of every 700, so
# full collections (which walk the whole heap and stall every request in flight) come
# far less often. Measured on the intake benchmark: p99 at 64 concurrent clients fell
# from about 170 ms to about 120 ms.
gc.collect()
gc.freeze()
gc.set_threshold(10_000, 50, 100)
