"""The task-list widget: the tasks the agent just listed, each with a "Done" button.

Widgets are built from plain dicts (chatkit deprecates its named widget classes). The
button's action is handled by the chat server, which completes the task through the same
TaskService every other transport uses, then redraws that row.
"""

from __future__ import annotations

from typing import Any

from chatkit.widgets import DynamicWidgetRoot, WidgetRoot

COMPLETE_ACTION = "doable.task.complete"
MAX_ROWS = 20


def _caption(task: dict[str, Any]) -> str:
    parts = [f"#{task['id']}"]
    if due := task.get("due"):
        # "2026-11-27T09:00:00+01:00" reads better as "2026-11-27 09:00".
        parts.append("due " + (str(due)[:16].replace("T", " ") if "T" in str(due) else str(due)))
    if (priority := task.get("priority")) and priority != "none":
        parts.append(f"{priority} priority")
    if recurrence := task.get("recurrence"):
        parts.append(str(recurrence.get("summary") or recurrence.get("rule")))
    return " · ".join(parts)


def task_row(task: dict[str, Any]) -> dict[str, Any]:
    """One ListViewItem for a task as views.TaskView dumps it."""
    done = bool(task.get("completed"))
    control: dict[str, Any] = (
        {"type": "Badge", "label": "Done", "color": "success", "variant": "soft"}
        if done
        else {
            "type": "Button",
            "label": "Done",
            "size": "sm",
            "variant": "outline",
            "onClickAction": {"type": COMPLETE_ACTION, "payload": {"task_id": task["id"]}, "handler": "server"},
        }
    )
    return {
        "type": "ListViewItem",
        "key": f"task-{task['id']}",
        "gap": 3,
        "align": "center",
        "children": [
            {
                "type": "Col",
                "flex": 1,
                "gap": 0,
                "children": [
                    {"type": "Text", "value": str(task["title"]), "weight": "medium", "lineThrough": done},
                    {"type": "Caption", "value": _caption(task)},
                ],
            },
            control,
        ],
    }


def _line(task: dict[str, Any]) -> str:
    return f"{_caption(task)} {task['title']}{' (done)' if task.get('completed') else ''}"


def task_list_copy_text(tasks: list[dict[str, Any]]) -> str:
    """The list as plain text: copied by the user, and shown to the model in later turns."""
    return "\n".join(_line(t) for t in tasks[:MAX_ROWS])


def with_line_replaced(copy_text: str, task: dict[str, Any]) -> str:
    """`copy_text` with the line of `task` rewritten (lines start with "#<id> ")."""
    prefix = f"#{task['id']} "
    return "\n".join(_line(task) if line.startswith(prefix) else line for line in copy_text.splitlines())


def task_list_widget(tasks: list[dict[str, Any]], *, total: int) -> DynamicWidgetRoot:
    """A ListView of up to MAX_ROWS tasks; `total` is how many matched."""
    shown = tasks[:MAX_ROWS]
    status = f"{total} tasks" if total != 1 else "1 task"
    if total > len(shown):
        status += f" (showing {len(shown)})"
    return DynamicWidgetRoot.model_validate(
        {
            "type": "ListView",
            "status": {"text": status, "icon": "check-circle"},
            "children": [task_row(t) for t in shown],
        }
    )


def with_row_replaced(widget: WidgetRoot, task: dict[str, Any]) -> DynamicWidgetRoot:
    """`widget` with the row of `task` redrawn (other rows untouched)."""
    data = widget.model_dump(exclude_none=True)
    key = f"task-{task['id']}"
    data["children"] = [task_row(task) if child.get("key") == key else child for child in data.get("children", [])]
    return DynamicWidgetRoot.model_validate(data)


def task_list_from(result: Any) -> tuple[list[dict[str, Any]], int] | None:
    """The tasks and total of a list_tasks result (views.TaskListView as JSON), else None."""
    if not isinstance(result, dict) or not isinstance(result.get("tasks"), list):
        return None
    tasks = [t for t in result["tasks"] if isinstance(t, dict) and "id" in t and "title" in t]
    total = result.get("total")
    return tasks, int(total) if isinstance(total, int) else len(tasks)
