"""Sealport's Houdini adapter: shelf actions, host interface, import hooks.

Reads top to bottom: :mod:`shelf` (what the shelf tools and HDA buttons call),
:mod:`host` (the :class:`sealport.host.Host` for Houdini, parent window),
:mod:`importers` (geometry via a geo node + File SOP, FBX via Houdini's FBX
importer, USD via a Reference LOP in /stage), :mod:`provenance` (user data +
locked spare parameters, Verify Scene). Qt comes only from :mod:`sealport.ui`.
"""
