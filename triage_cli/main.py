"""`triage` — one entry point for the service, the data tools and the model tools."""

from __future__ import annotations

import typer

from serving.cli import app as serving_app
from serving.keys_cli import app as keys_app
from serving.models_cli import app as models_app
from training.cli import data_app
from training.feedback import register as register_feedback_commands
from training.jobs.cli import register as register_job_commands
from training.linking_cli import register as register_linker_commands
from training.model_cli import register as register_model_commands
from triage_cli.rules import rules_app
from triage_cli.store import register as register_store_commands

app = typer.Typer(
    help="信访智能分办 — petition triage: serve the API, check data, train and evaluate models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(serving_app)  # serve
app.add_typer(data_app, name="data")
app.add_typer(keys_app, name="keys")  # keys create|list|revoke
app.add_typer(models_app, name="models")  # models register
app.add_typer(rules_app, name="rules")  # rules check|explain
register_model_commands(app)  # train, evaluate, promote, split, prepare-corpus, bench
register_job_commands(app)  # reclassify
register_store_commands(app)  # db upgrade|current, audit verify, ingest
register_feedback_commands(app)  # feedback export
register_linker_commands(app)  # train-linker, linker-data, linker-real, hotspots


def main() -> None:
    app()


if __name__ == "__main__":
    main()
