"""`triage` — one entry point for the service, the data tools and the model tools."""

from __future__ import annotations

import typer

from serving.cli import app as serving_app
from training.cli import data_app
from training.model_cli import register as register_model_commands

app = typer.Typer(
    help="信访智能分办 — petition triage: serve the API, check data, train and evaluate models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(serving_app)  # serve
app.add_typer(data_app, name="data")
register_model_commands(app)  # train, evaluate, promote, split, prepare-corpus, bench


def main() -> None:
    app()


if __name__ == "__main__":
    main()
