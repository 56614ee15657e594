"""Components that steer a run rather than run a stage: resolve the config, summarise the α sweep."""

from typing import List

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def configure(
    config: str,
    hybrid_alpha: str = "",
    hybrid_epochs: str = "",
    hybrid_time_budget_minutes: str = "",
    hybrid_seed: str = "",
    ddim_epochs: str = "",
    ddim_sample_steps: str = "",
    ddim_eta: str = "",
    fid_num_samples: str = "",
) -> str:
    """Apply the stage-prefixed pipeline parameters (empty: keep) to the config text; validate it once."""
    from hybridmi.task.component import setup_task_logging
    from hybridmi.task.configure import resolve_config_text

    setup_task_logging()
    return resolve_config_text(
        config,
        hybrid_alpha=hybrid_alpha,
        hybrid_epochs=hybrid_epochs,
        hybrid_time_budget_minutes=hybrid_time_budget_minutes,
        hybrid_seed=hybrid_seed,
        ddim_epochs=ddim_epochs,
        ddim_sample_steps=ddim_sample_steps,
        ddim_eta=ddim_eta,
        fid_num_samples=fid_num_samples,
    )


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def tradeoff(
    probes: Input[List[Metrics]],
    reconstructions: Input[List[Metrics]],
    table: Output[Markdown],
    table_csv: Output[Dataset],
    plot: Output[HTML],
):
    """One table (Markdown + CSV) and one plot of linear accuracy against MSE over the swept α values."""
    from hybridmi.task.component import setup_task_logging
    from hybridmi.task.tradeoff import tradeoff_rows, write_tradeoff

    setup_task_logging()
    rows = tradeoff_rows([p.path for p in probes], [r.path for r in reconstructions])
    write_tradeoff(rows, table_path=table.path, csv_path=table_csv.path, html_path=plot.path)
