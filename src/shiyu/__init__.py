"""Shiyu 市域: municipal social governance (市域社会治理) platform."""

__version__ = "0.1.0"
