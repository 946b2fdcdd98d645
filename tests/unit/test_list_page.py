"""A page of tasks is sent as JSON built once (views.list_page), not as a model per task: it must
be exactly what TaskListView would send, and each item exactly the task's view (get_task's), but
for the fields asked for and a cut description."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from doable.domain.clock import LocalCalendar
from doable.domain.query import TaskPage
from doable.domain.task import Priority, Recurrence, Reminder, Task
from doable.usecases.views import LIST_FIELDS, TaskListView, TaskView, list_page, task_fields, task_view

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
ZONES = [ZoneInfo(z) for z in ("UTC", "Europe/Berlin", "America/Los_Angeles", "Asia/Kolkata")]


@st.composite
def tasks(draw: st.DrawFn, task_id: int) -> Task:
    due_kind = draw(st.sampled_from(["none", "at", "all_day"]))
    due_at = NOW + timedelta(minutes=draw(st.integers(-100_000, 100_000)))
    due: dict[str, object] = {}
    if due_kind == "at":
        due = {"due_at": due_at}
    elif due_kind == "all_day":
        day = date(2026, 12, 1) + timedelta(days=draw(st.integers(0, 60)))
        due = {"due_date": day, "due_at": datetime(day.year, day.month, day.day, tzinfo=draw(st.sampled_from(ZONES)))}
    reminders = ()
    if due_kind != "none":
        before = [Reminder(minutes_before=m) for m in draw(st.lists(st.integers(0, 10_000), max_size=2, unique=True))]
        at = [Reminder(at=due_at - timedelta(hours=h)) for h in draw(st.lists(st.integers(1, 48), max_size=1))]
        reminders = tuple(before + at)
    recurrence = None
    if due_kind != "none" and draw(st.booleans()):
        rule = draw(st.sampled_from(["FREQ=DAILY", "FREQ=WEEKLY;BYDAY=MO,WE", "FREQ=MONTHLY;BYMONTHDAY=15"]))
        recurrence = Recurrence(rule=rule, start=due["due_at"])
    completed = draw(st.booleans())
    return Task(
        user_id="alice",
        task_id=task_id,
        title=draw(st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=40)),
        description=draw(st.sampled_from(["", "short", "word " * 80, "x" * 350, "a b " * 70]) | st.text(max_size=400)),
        priority=draw(st.sampled_from(list(Priority))),
        tags=tuple(draw(st.lists(st.sampled_from(["work", "home", "ünï"]), max_size=3, unique=True))),
        reminders=reminders,
        recurrence=recurrence,
        series_id=draw(st.none() | st.just("s-1")),
        completed=completed,
        completed_at=NOW if completed else None,
        created_at=NOW - timedelta(days=3),
        updated_at=NOW - timedelta(seconds=draw(st.integers(0, 10_000))),
        **due,  # type: ignore[arg-type]
    )


@settings(max_examples=150, deadline=None)
@given(
    page_tasks=st.integers(0, 6).flatmap(lambda n: st.tuples(*(tasks(i + 1) for i in range(n)))),
    tz=st.sampled_from(ZONES),
    fields=st.none() | st.lists(st.sampled_from(LIST_FIELDS), min_size=1, max_size=4, unique=True),
    description_max=st.none() | st.integers(20, 300),
    cursor=st.none() | st.just("next"),
)
def test_a_page_is_what_the_model_sends_and_each_item_is_the_tasks_view(
    page_tasks: tuple[Task, ...],
    tz: ZoneInfo,
    fields: list[str] | None,
    description_max: int | None,
    cursor: str | None,
) -> None:
    cal = LocalCalendar(now=NOW, tz=tz)
    page = TaskPage(tasks=list(page_tasks), total=len(page_tasks) + 5, next_cursor=cursor, query="all")
    data = list_page(page, cal, fields=fields, description_max=description_max)
    assert TaskListView.model_validate(data).model_dump(mode="json") == data
    for task, item in zip(page_tasks, data["tasks"], strict=True):
        view = task_view(task, tz).model_dump(mode="json")
        keep = set(LIST_FIELDS) if fields is None else {"id", *fields}
        assert set(item) == keep
        for key in keep - {"description"}:
            assert item[key] == view[key], key
        if "description" in keep:
            full = view["description"]
            cut = description_max is not None and len(full) > description_max
            assert item["description"] == (full[: description_max - 1].rstrip() + "…" if cut else full)  # type: ignore[operator]
    cut_any = description_max is not None and any(len(t.description) > description_max for t in page_tasks)
    shows_description = fields is None or "description" in fields
    assert (data["note"] is not None) == (cut_any and shows_description)


def test_task_fields_are_the_views_fields() -> None:
    task = Task(user_id="alice", task_id=1, title="t", created_at=NOW, updated_at=NOW)
    assert list(task_fields(task, ZONES[0])) == list(TaskView.model_fields)


def test_a_cut_description_ends_in_an_ellipsis_after_its_last_word_and_the_page_says_so() -> None:
    task = Task(user_id="alice", task_id=1, title="t", description="word " * 80, created_at=NOW, updated_at=NOW)
    page = list_page(
        TaskPage(tasks=[task], total=1, next_cursor=None), LocalCalendar(now=NOW, tz=ZONES[0]), description_max=21
    )
    assert page["tasks"][0]["description"] == "word word word word…"
    assert page["note"] is not None and "21" in page["note"]
