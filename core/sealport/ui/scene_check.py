"""Moved to :mod:`sealport.scene_check` (host-agnostic, no Qt); kept for old imports."""

from ..scene_check import AuditIndex, NodeCheck, check_node, sha256_file, summarize

__all__ = ["AuditIndex", "NodeCheck", "check_node", "sha256_file", "summarize"]
