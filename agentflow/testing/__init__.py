"""Test helpers for agentflow users: a real loopback OpenAI-compatible server.

``LoopbackServer`` serves scripted ``Reply`` and ``Fault`` entries over real HTTP on
127.0.0.1, so litellm's own client path runs in tests with no network and no model.
"""

from agentflow.testing._script import Fault, RecordedRequest, Reply
from agentflow.testing._server import LoopbackServer

__all__ = ["Fault", "LoopbackServer", "RecordedRequest", "Reply"]
