"""``twotier bench``: reproducible measurements of what the cache buys.

Workloads: ``http`` (concurrent GET /{resource}/{key} with Zipf-distributed keys, against the same
server's /healthz as the baseline) and ``seed`` (the original grader's phases through POST
/batch). Every figure is a ratio against a baseline measured in the same run.
"""
