"""The exporter's HTTP side: the server of /metrics, the probes and the status page, and its web config."""
