"""What runs on a laptop or in CI: run the pipelines on this machine, compile them, submit them to a KFP cluster.

    local.py       run_local(cfg_path, overrides, *, runner="subprocess"|"docker"|"inprocess", ...) -> LocalRun
    inprocess.py   the stages in this process in DAG order (dag.py: the DAG from the stages' declarations)
    summary.py     what ``hybridmi run`` prints at the end: report, headline numbers, time per task
    compare.py     ``hybridmi runs compare``: the headline metrics of local runs, one column per run
    arguments.py   a run's resolved config and pipeline arguments (both runners)
    compile.py     compile_pipelines(out_dir), PIPELINES and pipeline_for (the pipeline by name), local_pipeline
    submit.py      submit(host, cfg_path, overrides, *, pipeline, only, inputs, wait, auth, ...) -> Submitted
    connection.py  the KFP client: credentials, a healthz probe, one-line SubmitErrors, waiting for a final state

The floor above ``pipelines``: runners import the pipeline definitions and ``hybridmi.task``; nothing
below imports a runner (the contracts in pyproject.toml, checked by ``lint-imports``). The CLI imports
them when a command needs them.
"""
