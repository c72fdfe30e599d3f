"""budgets: token counting, pricing and budgets that never overspend.

Usable without agentflow. Importing it is cheap: tiktoken, diskcache, redis and httpx are
imported only when a counter or backend that needs them is built.
"""

from budgets._alerts import BudgetAlert
from budgets._amounts import Remaining, Reservation, Spend
from budgets._backends import (
    DiskCacheBackend,
    Hold,
    LedgerBackend,
    MemoryBackend,
    RedisBackend,
)
from budgets._budget import LIMIT_NAMES, Budget
from budgets._errors import BudgetError, BudgetExceeded, LedgerCorrupted, ReservationError
from budgets._ledger import Ledger, areserve_all, reserve_all
from budgets._pricing import GpuHourPricing, Pricing, TokenPricing
from budgets._tokens import TokenCounter
from budgets._values import Cost, Usage

__all__ = [
    "LIMIT_NAMES",
    "Budget",
    "BudgetAlert",
    "BudgetError",
    "BudgetExceeded",
    "Cost",
    "DiskCacheBackend",
    "GpuHourPricing",
    "Hold",
    "Ledger",
    "LedgerBackend",
    "LedgerCorrupted",
    "MemoryBackend",
    "Pricing",
    "RedisBackend",
    "Remaining",
    "Reservation",
    "ReservationError",
    "Spend",
    "TokenCounter",
    "TokenPricing",
    "Usage",
    "areserve_all",
    "reserve_all",
]
