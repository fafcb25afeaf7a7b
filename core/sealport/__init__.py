"""Sealport: secure asset import for DCC pipelines.

The core is host-agnostic: it never imports bpy, hou, maya or Qt.
Top-level entry point for adapters: :func:`sealport.importer.secure_import`.
"""

__version__ = "0.1.0"
