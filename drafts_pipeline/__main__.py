"""`drafts-pipeline` (and `python -m drafts_pipeline`): the command line."""

from drafts_pipeline.cli import run_cli


def main() -> None:
    run_cli()


if __name__ == "__main__":
    main()
