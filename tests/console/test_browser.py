"""The web console in headless Chromium against `doable serve`: two tabs kept in sync, a reminder
raising a browser notification and a toast, search and filters, chat adding a task, ChatKit's
wiring, and a screenshot (test-artifacts/console.png)."""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from playwright.async_api import Page, expect

from tests.console.conftest import ARTIFACTS, External, ScriptedModel, Served

TITLES = "#task-list .title"


async def sign_in(context: Any, token: str | None = None) -> Page:
    """A new tab of the console, signed in (the local-user button, or a pasted token), streams open."""
    page: Page = await context.new_page()
    await page.goto("/")
    if token is None:
        await page.get_by_role("button", name="Continue as local user").click()
    else:
        await page.get_by_label("Bearer token").fill(token)
        await page.get_by_role("button", name="Sign in with token").click()
    await page.locator("body[data-state='ready'][data-live='on']").wait_for(state="attached")
    return page


def label_of(day: date, time: str | None = None) -> str:
    """How Chromium's en-US medium date (and short time) reads."""
    text = f"{day:%b} {day.day}, {day.year}"
    return f"{text}, {time}" if time else text


def user_messages(request: dict[str, Any]) -> list[str]:
    """The user's words in one request to the model (the thread's history included)."""
    texts = []
    for m in request["messages"]:
        if m["role"] == "user":
            content = m["content"]
            texts.append(content if isinstance(content, str) else "".join(p.get("text", "") for p in content))
    return texts


def plain(text: str) -> str:
    return text.replace("\u202f", " ").replace("\xa0", " ")


async def test_a_task_added_in_one_tab_appears_in_the_other(context: Any, served: Served, external: External) -> None:
    first = await sign_in(context)
    second = await sign_in(context)
    await expect(first.locator("#who")).to_have_text("local")

    # Keyboard only: type a title and press Enter.
    await first.get_by_label("Title", exact=True).fill("Plan the trip")
    await first.get_by_label("Title", exact=True).press("Enter")

    await expect(second.get_by_role("checkbox", name="Plan the trip")).to_be_visible()
    await second.get_by_role("checkbox", name="Plan the trip").click()
    await expect(first.get_by_role("checkbox", name="Plan the trip")).to_be_checked()

    first.once("dialog", lambda dialog: dialog.accept())
    await first.get_by_role("button", name="Delete Plan the trip").click()
    await expect(second.locator(TITLES)).to_have_count(0)

    for page in (first, second):
        assert page.url == f"{served.base}/", "the token must never be in a URL"
        assert await page.evaluate("localStorage.length") == 0
        assert await page.evaluate("sessionStorage.getItem('doable.session')")  # this tab only
    assert external.urls == []


async def test_a_reminder_raises_a_browser_notification_a_toast_and_the_badge(context: Any, served: Served) -> None:
    page = await sign_in(context, served.token("rita"))
    assert await page.evaluate("Notification.permission") == "granted"
    form = page.locator("#task-form")
    at = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")  # rita's timezone is UTC

    await form.get_by_label("Title").fill("Stretch your legs")
    await form.get_by_text("Description, tags, repeat and reminders").click()
    await form.get_by_role("button", name="Add reminder").click()
    await form.get_by_label("Reminder 1: Reminder type").select_option("at")
    await form.get_by_label("Reminder 1: Remind at").fill(at)
    await form.get_by_role("button", name="Add task").click()
    await expect(page.locator("#task-list .reminder")).to_contain_text("Reminder")

    await page.wait_for_function("() => window.__notifications.length > 0", timeout=15_000)
    [shown] = await page.evaluate("() => window.__notifications")
    assert shown["title"] == "Reminder: Stretch your legs"
    await expect(page.locator(".toast-reminder")).to_contain_text("Stretch your legs")
    await expect(page.locator("#badge")).to_have_text("1")
    await expect(page.get_by_role("button", name="Notifications, 1 unread")).to_be_visible()

    await page.get_by_role("button", name="Notifications, 1 unread").click()
    dialog = page.get_by_role("dialog", name="Notifications")
    await expect(dialog.get_by_text("Stretch your legs")).to_be_visible()
    await dialog.get_by_role("button", name="Mark all read").click()
    await expect(page.locator("#badge")).to_be_hidden()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()


async def test_search_filters_and_sort_narrow_the_list(browser: Any, served: Served, external: External) -> None:
    ny = ZoneInfo("America/New_York")
    today = datetime.now(ny).date()
    async with served.client("fiona") as api:
        assert (await api.put("/api/profile", json={"timezone": "America/New_York"})).status_code == 200
        for body in (
            {
                "title": "Buy oat milk",
                "priority": "high",
                "tags": ["home"],
                "due": f"{today + timedelta(days=1)}T09:00",
            },
            {
                "title": "Write the report",
                "priority": "medium",
                "tags": ["work"],
                "due": str(today + timedelta(days=3)),
            },
            {
                "title": "File taxes",
                "priority": "low",
                "tags": ["home", "admin"],
                "due": str(today - timedelta(days=2)),
            },
            {"title": "Call mom"},
            {"title": "Water plants", "tags": ["home"], "description": "The ferns need extra"},
        ):
            assert (await api.post("/api/tasks", json=body)).status_code == 201
        assert (await api.post("/api/tasks/4/complete")).status_code == 200

    # The browser is in Berlin; due times show in fiona's Doable timezone, New York.
    context = await browser.new_context(base_url=served.base, locale="en-US", timezone_id="Europe/Berlin")
    try:
        page = await sign_in(context, served.token("fiona"))
        titles = page.locator(TITLES)
        await expect(titles).to_have_count(5)
        await expect(page.locator("#list-status")).to_have_text("Showing 5 of 5 tasks.")
        milk = page.locator("#task-list li.task", has_text="Buy oat milk")
        due = plain(await milk.locator(".due").inner_text())
        assert due == f"Due {label_of(today + timedelta(days=1), '9:00 AM')}"
        await expect(page.locator("#tz-banner")).to_contain_text("America/New_York")
        await expect(page.get_by_role("button", name="Use Europe/Berlin")).to_be_visible()
        taxes = page.locator("#task-list li.task", has_text="File taxes")
        assert plain(await taxes.locator(".due").inner_text()) == f"Overdue: {label_of(today - timedelta(days=2))}"

        search = page.get_by_role("searchbox", name="Search")
        await search.fill("milk")
        await expect(titles).to_have_text(["Buy oat milk"])
        await search.fill("ferns")  # descriptions too
        await expect(titles).to_have_text(["Water plants"])
        await search.fill("")

        status = page.get_by_label("Status")
        await status.select_option("completed")
        await expect(titles).to_have_text(["Call mom"])
        await status.select_option("pending")
        await expect(titles).to_have_count(4)
        await status.select_option("all")

        await page.get_by_role("checkbox", name="High").check()
        await expect(titles).to_have_text(["Buy oat milk"])
        await page.get_by_role("checkbox", name="Low").check()
        await expect(titles).to_have_count(2)
        await page.get_by_role("button", name="Clear filters").click()
        await expect(titles).to_have_count(5)

        filters = page.get_by_role("search", name="Find tasks")
        await filters.get_by_label("Tags", exact=True).fill("home")
        await expect(titles).to_have_count(3)
        await filters.get_by_text("More filters").click()
        await filters.get_by_label("Tags match").select_option("all")
        await filters.get_by_label("Tags", exact=True).fill("home, admin")
        await expect(titles).to_have_text(["File taxes"])
        await page.get_by_role("button", name="Clear filters").click()

        await filters.get_by_label("Due", exact=True).select_option("overdue")
        await expect(titles).to_have_text(["File taxes"])
        await filters.get_by_label("Due", exact=True).select_option("none")
        await expect(titles).to_have_text(["Water plants", "Call mom"])
        await filters.get_by_label("Due", exact=True).select_option("")
        await filters.get_by_label("Due after").fill(str(today))
        await filters.get_by_label("Due before").fill(str(today + timedelta(days=2)))
        await expect(titles).to_have_text(["Buy oat milk"])
        await page.get_by_role("button", name="Clear filters").click()

        await filters.get_by_label("Sort by").select_option("title")
        await expect(titles).to_have_text(
            ["Buy oat milk", "Call mom", "File taxes", "Water plants", "Write the report"]
        )
        await filters.get_by_label("Sort by").select_option("due")
        await expect(titles.first).to_have_text("File taxes")
        await filters.get_by_label("Order").select_option("desc")
        await expect(titles.first).not_to_have_text("File taxes")
        await filters.get_by_label("Filter expression").fill("#work | p:high")
        await filters.get_by_label("Sort by").select_option("title")
        await filters.get_by_label("Order").select_option("asc")
        await expect(titles).to_have_text(["Buy oat milk", "Write the report"])
    finally:
        await context.close()
    assert external.urls == []


async def test_editing_shows_and_changes_recurrence_and_reminders(context: Any, served: Served) -> None:
    async with served.client("eddie") as api:
        created = await api.post(
            "/api/tasks",
            json={
                "title": "Team sync",
                "due": "2026-12-07T10:00",
                "recurrence": "weekly",
                "reminders": [{"minutes_before": 10}],
            },
        )
        assert created.status_code == 201
    page = await sign_in(context, served.token("eddie"))
    row = page.locator("#task-list li.task", has_text="Team sync")
    await expect(row.locator(".repeat")).to_have_text("Repeats weekly")
    await expect(row.locator(".reminder")).to_contain_text("Reminder 10 min before")

    await page.get_by_role("button", name="Edit Team sync").click()
    form = page.locator("#task-form")
    await expect(form.get_by_label("Title")).to_be_focused()
    await expect(form.get_by_label("Repeats")).to_have_value("weekly")
    await expect(form.get_by_label("Reminder 1: Minutes before due")).to_have_value("10")
    await form.get_by_label("Repeats").select_option("custom")
    await form.get_by_label("Rule").fill("every 2 weeks")
    await form.get_by_label("Reminder 1: Minutes before due").fill("30")
    await form.get_by_role("button", name="Save changes").click()

    await expect(row.locator(".repeat")).to_have_text("Repeats FREQ=WEEKLY;INTERVAL=2")
    await expect(row.locator(".reminder")).to_contain_text("Reminder 30 min before")
    async with served.client("eddie") as api:
        task = (await api.get("/api/tasks/1")).json()
    assert task["title"] == "Team sync" and task["due"].startswith("2026-12-07T10:00")
    assert task["reminders"][0]["minutes_before"] == 30

    # Clearing: no repeat, no reminders.
    await page.get_by_role("button", name="Edit Team sync").click()
    await form.get_by_label("Repeats").select_option("")
    await form.get_by_role("button", name="Remove reminder 1").click()
    await form.get_by_role("button", name="Save changes").click()
    await expect(row.locator(".repeat")).to_have_count(0)
    await expect(row.locator(".reminder")).to_have_count(0)


async def test_chat_with_a_scripted_model_adds_a_task_to_the_list(
    context: Any, served: Served, scripted_model: ScriptedModel, external: External
) -> None:
    page = await sign_in(context, served.token("chad"))
    message = page.get_by_label("Message", exact=True)
    await message.fill("add Buy oat milk")
    await message.press("Enter")

    reply = page.locator("#chat-log .assistant").last
    await expect(reply.locator(".text")).to_have_text("Added “Buy oat milk”. Anything else?")
    await expect(reply.locator(".tools")).to_have_text("Used: add_task")
    await expect(page.get_by_role("checkbox", name="Buy oat milk")).to_be_visible()
    assert user_messages(scripted_model.requests[-1]) == ["add Buy oat milk"]

    # The conversation continues on the same thread.
    await message.fill("thanks")
    await message.press("Enter")
    await expect(page.locator("#chat-log .assistant").last.locator(".text")).to_have_text(
        "Say “add …” and I will add it."
    )
    assert user_messages(scripted_model.requests[-1]) == ["add Buy oat milk", "thanks"]

    # A reload keeps the session (this tab's sessionStorage) and shows the conversation so far.
    await page.reload()
    await page.locator("body[data-state='ready'][data-chat='plain']").wait_for(state="attached")
    await expect(page.locator("#chat-log .msg")).to_have_count(4)
    await expect(page.locator("#chat-log .msg.user").first).to_have_text("You: add Buy oat milk")
    assert external.urls == []


async def test_with_a_chatkit_domain_key_the_chatkit_component_talks_to_chatkit(browser: Any, served: Served) -> None:
    """ChatKit's script is stubbed (no network here); the page wires it to /chatkit with the token."""
    context = await browser.new_context(base_url=served.base, bypass_csp=True)
    try:
        await context.route(
            "**/api/console/config",
            lambda route: route.fulfill(
                json={"local_signin": False, "chatkit_domain_key": "domain_pk_test", "version": "test"}
            ),
        )
        await context.route(
            "https://cdn.platform.openai.com/**",
            lambda route: route.fulfill(
                content_type="text/javascript",
                body="customElements.define('openai-chatkit', class extends HTMLElement {"
                " setOptions(o) { window.__chatkit = o; } setThreadId() {} });",
            ),
        )
        page = await sign_in(context, served.token("kit"))
        await expect(page.locator("body[data-chat='chatkit'] openai-chatkit")).to_be_attached()
        assert await page.locator("#chat-plain").is_hidden()
        options = await page.evaluate("({url: __chatkit.api.url, domainKey: __chatkit.api.domainKey})")
        assert options == {"url": "/chatkit", "domainKey": "domain_pk_test"}
        status, body = await page.evaluate(
            """async () => {
                const r = await __chatkit.api.fetch('/chatkit', {method: 'POST',
                    headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({type: 'threads.list', params: {limit: 5}})});
                return [r.status, await r.json()];
            }"""
        )
        assert status == 200 and body["data"] == []
    finally:
        await context.close()


async def test_every_control_has_a_label(context: Any, served: Served) -> None:
    page = await sign_in(context, served.token("lena"))
    await page.locator("#task-form").get_by_text("Description, tags, repeat and reminders").click()
    await page.get_by_role("button", name="Add reminder").click()
    unlabeled = await page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter((e) => e.type !== 'hidden')
            .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                && !e.getAttribute('aria-labelledby') && !(e.tagName === 'BUTTON' && e.textContent.trim()))
            .map((e) => e.outerHTML)"""
    )
    assert unlabeled == []


async def test_screenshot_of_the_console(context: Any, served: Served) -> None:
    """test-artifacts/console.png: the console with a few tasks, a chat turn and a reminder toast."""
    today = datetime.now(UTC).date()
    async with served.client("alex") as api:
        for body in (
            {"title": "Renew passport", "priority": "high", "tags": ["admin"], "due": str(today - timedelta(days=1))},
            {
                "title": "Weekly review",
                "priority": "medium",
                "tags": ["work"],
                "due": f"{today + timedelta(days=2)}T16:00",
                "recurrence": "weekly",
                "reminders": [{"minutes_before": 30}],
            },
            {"title": "Book dentist", "tags": ["health"], "due": str(today + timedelta(days=5))},
            {"title": "Read 'Deep Work'", "priority": "low", "tags": ["reading"], "description": "Chapters 3 and 4"},
            {"title": "Pay electricity bill", "tags": ["home"], "due": str(today)},
        ):
            assert (await api.post("/api/tasks", json=body)).status_code == 201
        assert (await api.post("/api/tasks/5/complete")).status_code == 200
    page = await sign_in(context, served.token("alex"))
    message = page.get_by_label("Message", exact=True)
    await message.fill("add Call the plumber")
    await message.press("Enter")
    await expect(page.get_by_role("checkbox", name="Call the plumber")).to_be_visible()
    await expect(page.locator("#chat-log .assistant .tools")).to_have_text("Used: add_task")
    async with served.client("alex") as api:
        at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat(timespec="seconds")
        body = {"title": "Stand up and stretch", "tags": ["health"], "reminders": [{"at": at}]}
        assert (await api.post("/api/tasks", json=body)).status_code == 201
    await expect(page.locator(".toast-reminder")).to_contain_text("Stand up and stretch", timeout=15_000)
    await expect(page.locator("#badge")).to_have_text("1")
    await page.evaluate("() => document.activeElement.blur()")

    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "console.png"
    await page.screenshot(path=str(path), animations="disabled")
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1280, 800)
