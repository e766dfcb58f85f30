"""Shared helpers of the Open311 tests (schemas, XML reading, the app with the Open311 routers)."""
