"""Helpers for the watermark tests and benchmark."""
