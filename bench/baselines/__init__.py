"""Baselines measured beside carm: the floor (the test bed's physical limit) and kopf (what a
Python team would write instead). Each runs as a process of its own, like carm."""
