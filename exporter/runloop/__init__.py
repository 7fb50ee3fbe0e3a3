"""Runloop's API as the exporter sees it: the HTTP client, its errors, the key, the request gate, records.

Nothing here knows what the exporter does with a record; every other layer may use this one.
"""
