"""What runs inside a pipeline task's pod (or one rank of it): one stage from artifact directories, with the
store, metrics and checkpoint mirror the environment names.

    run.py         run_task(stage, config, inputs=, outputs=) -> TaskResult: what every component body,
                   ``hybridmi stage`` and the in-process runner call
    component.py   setup_task_logging, log_metrics, log_confusion: results on (duck-typed) KFP artifacts
    configure.py   resolve_config_text: the configure task (config text + config parameters)
    failure.py     recording_failure: a failing task's one-line record for the local runner
    identity.py    the run id, checkpoint keys, the metrics run id
    mirror.py      where a trainer's checkpoints are; restore the newer, mirror only finite ones
    launch.py      the train task on N local ranks through torchrun; rank.py: one of those ranks
    scratch.py     scratch directories that do not outlive their process
    tradeoff.py    the α sweep's table, CSV and plot (the tradeoff task)
    trainjob/      the multi-node train task: a Kubeflow Trainer TrainJob created, watched and harvested

Imports nothing above ``hybridmi.stages``: never ``components``, ``pipelines`` or the runners, and no kfp
(the contracts in pyproject.toml, checked by ``lint-imports``).
"""
