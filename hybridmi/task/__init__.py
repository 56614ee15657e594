"""What runs inside a pipeline task's pod (or one rank of it): one stage from artifact directories, with the
store, metrics and checkpoint mirror the environment names (``run.py``); the rank launcher (``launch.py``,
``rank.py``), run identity, checkpoint mirror, scratch directories and the TrainJob client."""
