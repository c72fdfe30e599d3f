"""What a chat request costs in tokens besides its text, and the request shapes counted.

The overhead follows OpenAI's cookbook ("How to count tokens with tiktoken"): 3 tokens per
message, 1 more per ``name``, 3 to prime the reply; tool schemas add a 9-token wrapper and
each tool call 3. The bottom of token counting: the offline counters (``_tokens``) and the
engines' ``/tokenize`` client (``_remote_tokens``) both read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "IMAGE_TOKENS",
    "REPLY_PRIMER",
    "TOKENS_PER_MESSAGE",
    "TOKENS_PER_NAME",
    "TOOLS_OVERHEAD",
    "TOOL_CALL_OVERHEAD",
    "Messages",
    "Tools",
]

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMER = 3
TOOLS_OVERHEAD = 9
TOOL_CALL_OVERHEAD = 3
IMAGE_TOKENS = 85  # an image part at detail="low"; higher details cost more: reserve more

Messages = Sequence[Mapping[str, Any]]
Tools = Sequence[Mapping[str, Any]]
