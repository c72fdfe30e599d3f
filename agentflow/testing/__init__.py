"""Test helpers for agentflow users: a real loopback OpenAI-compatible server.

``LoopbackServer`` serves scripted ``Reply`` and ``Fault`` entries over real HTTP on
127.0.0.1, so litellm's own client path runs in tests with no network and no model.
``set_testing`` turns retry sleeps and the response cache off and resets process-wide
state; ``reset_state`` resets it alone.
"""

from agentflow.testing._mode import TestingSwitch, is_testing, reset_state, set_testing
from agentflow.testing._script import Fault, RecordedRequest, Reply
from agentflow.testing._server import LoopbackServer

__all__ = [
    "Fault",
    "LoopbackServer",
    "RecordedRequest",
    "Reply",
    "TestingSwitch",
    "is_testing",
    "reset_state",
    "set_testing",
]
