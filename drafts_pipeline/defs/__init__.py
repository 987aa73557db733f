"""The Dagster definitions, one package per domain: drafting, voting, usage."""
