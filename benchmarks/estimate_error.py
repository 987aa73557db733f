"""How far the estimate's default characters-per-token ratio is from a real tokenizer.

The estimate counts no tokens (see `drafts_pipeline/llm/estimate.py`); before a provider has
answers to calibrate on, it divides the characters of each prompt by a default ratio. This
builds the prompt of every undocumented public function under each PATH (default: the bundled
sample project), as `tasks discover` and `pending_tasks` would (the template's fixed part and
the task part, each counted), and counts its tokens with
OpenAI's o200k_base tokenizer from the `bpe-openai` package, which carries its tables (tiktoken
downloads them on first use, and this machine reaches no site but the package registries).
Anthropic's and Moonshot's tokenizers are not available offline: no figure for them.

    .venv/bin/pip install bpe-openai   # not a dependency of the project: only this measurement
    .venv/bin/python -m benchmarks.estimate_error [PATH ...] [--limit 2000]
"""

import argparse
import importlib
import statistics
from pathlib import Path

from drafts_pipeline.llm.estimate import DEFAULT_CHARS_PER_TOKEN
from drafts_pipeline.prompts.templates import build_prompt
from drafts_pipeline.tasks.discover import discover_tasks

SAMPLE_PROJECT = Path(__file__).parents[1] / "drafts_pipeline" / "sample_project"


def prompts_under(root: Path, limit: int) -> list[tuple[str, str]]:
    """The texts each request sends: the template's fixed part and the task part."""
    found = discover_tasks(root)
    built = [
        build_prompt(
            task_id=task.id, template=task.template, language=task.language, symbol=task.symbol,
            source_path=task.source_path, code=task.code, context=task.context,
        )
        for task in found.tasks[:limit]
    ]  # fmt: skip
    return [(prompt.system, prompt.text) for prompt in built]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[SAMPLE_PROJECT])
    parser.add_argument("--limit", type=int, default=2000, help="prompts per path at most")
    args = parser.parse_args()
    try:
        bpe_openai = importlib.import_module("bpe_openai")
    except ImportError:
        raise SystemExit("needs the bpe-openai package: .venv/bin/pip install bpe-openai") from None
    encoding = bpe_openai.get_encoding("o200k_base")
    ratio = DEFAULT_CHARS_PER_TOKEN
    for root in args.paths:
        prompts = prompts_under(root, args.limit)
        if not prompts:
            print(f"{root}: no undocumented public function")
            continue
        counted = [
            (sum(len(text) for text in texts), sum(len(encoding.encode(text)) for text in texts))
            for texts in prompts
        ]
        chars = sum(c for c, _ in counted)
        tokens = sum(t for _, t in counted)
        errors = [(c / ratio - t) / t for c, t in counted]
        print(
            f"{root}: {len(counted)} prompts, {chars:,} characters, {tokens:,} o200k_base tokens "
            f"({chars / tokens:.2f} characters a token); at {ratio:g} the estimate counts "
            f"{(chars / ratio - tokens) / tokens:+.1%} in total, per prompt "
            f"{statistics.fmean(errors):+.1%} on average ({min(errors):+.1%} to "
            f"{max(errors):+.1%})"
        )


if __name__ == "__main__":
    main()
