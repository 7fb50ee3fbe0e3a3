"""What the HTTP server shows: the rendered snapshot, the self-metrics and the status page.

`exporter.publisher.StatePublisher` swaps these references after each sync; any number of request threads read them, each reading a reference
once, so a scrape sees one snapshot whole.
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.http import status
from exporter.metrics.exposition import Rendered


class State:
    """What the server shows; swapped after each sync, read by any number of request threads.

    `page` is the status page at `/`, rendered after each sync by publisher.StatePublisher: a request copies it.
    """

    def __init__(
        self,
        self_metrics: Callable[[], bytes],
        *,
        demo: bool = False,
        self_metrics_openmetrics: Callable[[], bytes] | None = None,
    ) -> None:
        self.rendered: Rendered | None = None
        self.self_metrics = self_metrics
        # The self-metrics in OpenMetrics, ending in `# EOF`; without it every scrape gets the text format.
        self.self_metrics_openmetrics = self_metrics_openmetrics
        self.demo = demo
        self.page: bytes = status.render(demo=demo, last=None, table=None)

    @property
    def ready(self) -> bool:
        """True once a sync has succeeded (a snapshot exists)."""
        return self.rendered is not None
