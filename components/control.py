"""The α sweep's summary: a component that runs no stage."""

from typing import List

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output

from components.image import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def tradeoff(
    probes: Input[List[Metrics]],
    reconstructions: Input[List[Metrics]],
    table: Output[Markdown],
    table_csv: Output[Dataset],
    plot: Output[HTML],
):
    """One table (Markdown + CSV) and the frontier plot of linear accuracy against MSE over the swept α values, with
    the paper's Table 1 rows marked."""
    from hybridmi.task.component import setup_task_logging
    from hybridmi.task.tradeoff import sweep_paper_dataset, tradeoff_rows, write_tradeoff

    setup_task_logging()
    rows = tradeoff_rows([p.path for p in probes], [r.path for r in reconstructions])
    paper = sweep_paper_dataset([p.path for p in probes])
    write_tradeoff(rows, table_path=table.path, csv_path=table_csv.path, html_path=plot.path, paper=paper)
