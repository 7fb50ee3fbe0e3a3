"""The figures: snapshots of runs and jobs, their labels and filters, the Prometheus exposition, and the
exporter's own metrics. Built from runloop records; knows nothing of how a sync decides what to read.
"""
