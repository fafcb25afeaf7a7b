"""Sealport's shared Qt panels (sign-in, asset browser, progress, errors).

This package is the only place in Sealport that imports Qt, and it imports it
through :mod:`sealport.ui.qt` (``qtpy``) so that PySide6 hosts (Maya 2025+,
Houdini 21) and PySide2 hosts (Houdini 20.5) run the same code. Importing this
package itself does not import Qt: :mod:`sealport.scene_check` is pure
Python so headless hosts (hython, mayapy) can use it.
"""

from __future__ import annotations
