"""The train step on many nodes: a Kubeflow Trainer TrainJob created, watched and harvested by a pipeline task.

    manifest.py  render_trainjob(TrainJobRequest) -> dict    (pure; validated against the Trainer CRD in tests)
    status.py    trainjob_state(obj), wait_for_trainjob(get, ...)   (phases, conditions, one log line per change)
    api.py       TrainJobs(api_client, namespace): get / create (fieldValidation=Strict) / delete with one-line errors;
                 kube_api_client, task_namespace, task_pod (the owner)
    launch.py    run_trainjob_task(config, dataset_dir=, model_dir=, nodes=NodeSettings(...)): what the component runs;
                 deletes its TrainJob once finished and read

The contract with the train stage (every process of every node runs ``hybridmi stage train``) is in
docs/ARCHITECTURE.md. Imports the kubernetes client (a dependency of kfp), never kfp itself.
"""
