"""ASGI entry point for servers: ``uvicorn shiyu.asgi:app``."""

from shiyu.main import create_app

app = create_app()
