"""Shard tasks: a conversion cut into serializable specs that any worker runs (lake/shards/worker.py),
on the engine a runner names (lake/shards/spark.py), with one committer (lake/shards/driver.py).

Nothing is imported here: lake/convert.py reads the runner options from this package, and the
driver imports lake/convert.py.
"""
