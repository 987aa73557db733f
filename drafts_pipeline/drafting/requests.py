"""What is sent for a stored task, live or in a batch, and what its drafts record as sent."""

from drafts_pipeline.llm.provider import DraftRequest
from drafts_pipeline.prompts.templates import fixed_part, full_prompt
from drafts_pipeline.store.models import DocumentationTask


def draft_request(task: DocumentationTask) -> DraftRequest:
    """The request for a task whose prompt `pending_tasks` recorded: its stored task part, and
    the fixed part of the template version that part was built with."""
    return DraftRequest(
        task_id=task.id,
        prompt=task.prompt or "",
        symbol=task.symbol,
        code=task.code,
        language=task.language,
        system=fixed_part(task.id, task.template_version),
    )


def prompt_used(request: DraftRequest) -> str:
    """A draft's `prompt_used`: the whole prompt as the model read it, fixed part first."""
    return full_prompt(request.system, request.prompt)
