"""Sealport's Maya adapter: menu, host interface and import hooks.

Reads top to bottom: :mod:`menu` (register/unregister the "Sealport" menu),
:mod:`host` (the :class:`sealport.host.Host` for Maya, the panels' parent
window), :mod:`importers` (one hook per format, each calling Maya's own
importer), :mod:`provenance` (attributes on the imported top node and Verify
Scene). Maya's Qt widgets come from :mod:`sealport.ui` (qtpy), never from here.
"""
