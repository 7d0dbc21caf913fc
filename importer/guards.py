"""Circuit breakers of a run: when answers show that carrying on is futile, the rows left stop early
(`not_attempted`, with the reason) instead of each failing slowly on its own."""

from __future__ import annotations

import threading

from .client import Attempted
from .policy import mentions_campaign
from .tls import ConnectProblem

CAMPAIGN_NOT_FOUND_LIMIT = 5


class CampaignGuard:
    """Counts consecutive "not found" answers per campaign; past the limit the campaign's rows stop."""

    def __init__(self) -> None:
        self._streak: dict[str, int] = {}
        self.stopped: dict[str, str] = {}
        self._lock = threading.Lock()

    def record(self, campaign: str, result: Attempted) -> None:
        with self._lock:
            if result.http_status == 404 and mentions_campaign(result.message):
                n = self._streak.get(campaign, 0) + 1
                self._streak[campaign] = n
                if n >= CAMPAIGN_NOT_FOUND_LIMIT and campaign not in self.stopped:
                    self.stopped[campaign] = (
                        f"campaign {campaign} answered not found on {n} consecutive rows ({result.message}); "
                        "check campaign_id"
                    )
            elif campaign not in self.stopped:
                self._streak[campaign] = 0


class ReachabilityGuard:
    """Consecutive requests that ended without any HTTP answer (refused, timed out, DNS) after all their
    retries. Any answer resets the count. A TLS or proxy failure stops the run at the first one: every request
    would fail alike, and the fix is a setting (`problem` keeps it for the summary)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._streak = 0
        self._lock = threading.Lock()
        self.problem: ConnectProblem | None = None

    def answered(self) -> None:
        with self._lock:
            self._streak = 0

    def failed(self, message: str, problem: ConnectProblem | None = None) -> str | None:
        """Returns the reason to stop once the limit is reached (at once for a TLS or proxy `problem`)."""
        with self._lock:
            if problem is not None:
                self.problem = self.problem or problem
                return self.problem.reason
            self._streak += 1
            if self._streak >= self.limit:
                return (f"the API did not answer {self._streak} requests in a row after retries ({message}); "
                        "check the network and api.base_url, then rerun")
        return None
