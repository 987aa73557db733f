"""`drafts-pipeline` (and `python -m drafts_pipeline`): the command line, tuned for a process
that imports a great deal and then exits.

A command that runs the graph imports Dagster, SQLAlchemy, pandas and the provider SDKs: several
hundred thousand objects that live until the process ends. Python's cyclic garbage collector
would walk them all while they load (0.6 s), again in every full collection while the runs go,
and once more as the interpreter exits (1 s after a 300-task run). So imports run with the
collector off, and what they made is then frozen (`gc.freeze`: kept, never scanned again); at the
end, what the command made is frozen too, so the exit does not scan it.
"""

import gc
import sys


def main() -> None:
    gc.disable()
    try:
        from drafts_pipeline.cli import GRAPH_COMMANDS, run_cli

        if len(sys.argv) > 1 and sys.argv[1] in GRAPH_COMMANDS:
            import drafts_pipeline.definitions  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()
    try:
        run_cli()
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
