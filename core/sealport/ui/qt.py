"""The one Qt binding shim: every panel imports Qt from here, never directly.

``qtpy`` picks the binding the host already loaded (PySide6 in Maya 2025+ and
Houdini 21, PySide2 in Houdini 20.5) so one copy of the panels serves both.
``wrap_pointer`` turns a host's raw C++ window pointer (Maya's
``MQtUtil.mainWindow()``) into a widget with the matching shiboken.
"""

from __future__ import annotations

from typing import Any

from qtpy import API_NAME, QtCore, QtGui, QtWidgets
from qtpy import shiboken as _shiboken

Signal = QtCore.Signal
Slot = QtCore.Slot

__all__ = [
    "API_NAME",
    "QtCore",
    "QtGui",
    "QtWidgets",
    "Signal",
    "Slot",
    "ensure_app",
    "wrap_pointer",
]


def ensure_app() -> QtWidgets.QApplication:
    """The running QApplication (a host's), or a new one for standalone use."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication([])
    assert isinstance(app, QtWidgets.QApplication)
    return app


def wrap_pointer(pointer: Any, cls: type[Any] = QtWidgets.QWidget) -> Any:
    """Wrap a C++ QWidget pointer (an int or a swig/sip pointer) as ``cls``."""
    if pointer is None:
        return None
    return _shiboken.wrapInstance(int(pointer), cls)
