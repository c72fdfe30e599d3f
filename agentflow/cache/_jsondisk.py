"""The response cache's diskcache ``Disk``: the budgets ledger's JSON-only one.

It stores JSON text inline and never unpickles: a row it did not write (pickle or file
mode, a non-text value) raises ``UnsafeEntry`` and is never decoded. One implementation
serves both the disk ledger and ``DiskStore``; imported when a ``DiskStore`` opens, so
``import agentflow`` does not import diskcache.
"""

from budgets._backends._jsondisk import JsonDisk, UnsafeEntry

__all__ = ["JsonDisk", "UnsafeEntry"]
