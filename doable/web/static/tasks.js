// The task list (search, filters, sort, paging) and the add/edit form.

import { $, el, announce } from "./dom.js";

const PRESETS = ["daily", "weekdays", "weekly", "monthly", "yearly"];
const PAGE = 50;

export function createTasks({ api, toast, timezone }) {
  const list = $("#task-list");
  const status = $("#list-status");
  const filters = $("#filters");
  const more = $("#more");
  let shown = [];
  let cursor = null;
  let loadSeq = 0;
  let lastList = null;

  // ---- formatting (in the user's Doable timezone) -------------------------------------------

  function formatDue(task) {
    if (!task.due) return "";
    if (task.all_day) {
      const [y, m, d] = task.due.split("-").map(Number);
      return new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" }).format(
        new Date(Date.UTC(y, m - 1, d)),
      );
    }
    return formatInstant(task.due);
  }

  function formatInstant(iso) {
    return new Intl.DateTimeFormat(undefined, {
      dateStyle: "medium",
      timeStyle: "short",
      timeZone: timezone(),
    }).format(new Date(iso));
  }

  function isOverdue(task) {
    if (task.completed || !task.due || !lastList) return false;
    if (task.all_day) return task.due < lastList.today;
    return new Date(task.due) < new Date();
  }

  function reminderText(r) {
    const when = r.fires_at ? ` (${formatInstant(r.fires_at)})` : "";
    if (r.minutes_before != null) {
      return r.minutes_before === 0 ? `Reminder at due time${when}` : `Reminder ${r.minutes_before} min before${when}`;
    }
    return `Reminder ${r.at ? formatInstant(r.at) : ""}`;
  }

  // ---- the list -------------------------------------------------------------------------------

  function query(limit, after) {
    const data = new FormData(filters);
    const params = new URLSearchParams();
    for (const name of ["search", "status", "tags_mode", "due", "sort", "order", "filter"]) {
      const value = String(data.get(name) || "").trim();
      if (value && !(name === "status" && value === "all") && !(name === "tags_mode" && value === "any")) {
        params.set(name, value);
      }
    }
    for (const p of data.getAll("priority")) params.append("priority", p);
    for (const tag of splitTags(data.get("tags"))) params.append("tags", tag);
    for (const name of ["due_after", "due_before"]) {
      const value = data.get(name);
      if (value) params.set(name, value);
    }
    params.set("limit", String(limit));
    if (after) params.set("cursor", after);
    return params;
  }

  // Reloads from the start, keeping as many rows as are shown (live updates keep the page).
  async function refresh() {
    const limit = Math.min(200, Math.max(PAGE, shown.length));
    return load(query(limit), false);
  }

  async function load(params, append) {
    const seq = ++loadSeq;
    try {
      const page = await api.get(`/api/tasks?${params}`);
      if (seq !== loadSeq) return; // a newer load (new filters, a live update) wins
      lastList = page;
      shown = append ? shown.concat(page.tasks) : page.tasks;
      cursor = page.next_cursor;
      const filtered = [...params.keys()].some((k) => !["sort", "order", "limit", "cursor"].includes(k));
      render(page.total, filtered);
    } catch (err) {
      if (seq === loadSeq) status.textContent = `Could not load tasks: ${err.message}`;
    }
  }

  function render(total, filtered) {
    const focusKey = document.activeElement && document.activeElement.dataset.focusKey;
    list.replaceChildren(...shown.map(item));
    more.hidden = !cursor;
    if (total > 0) status.textContent = `Showing ${shown.length} of ${total} tasks.`;
    else status.textContent = filtered ? "No tasks match these filters." : "No tasks yet. Add one, or ask the chat.";
    if (focusKey) {
      const again = list.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`);
      if (again) again.focus();
    }
  }

  function item(task) {
    const titleId = `task-title-${task.id}`;
    const check = el("input", {
      type: "checkbox",
      checked: task.completed,
      "aria-labelledby": titleId,
      "data-focus-key": `done-${task.id}`,
      onchange: () => run(() => toggle(task), check),
    });
    const meta = el("ul", { class: "meta" });
    if (task.priority !== "none") meta.append(el("li", { class: `prio prio-${task.priority}` }, `${cap(task.priority)} priority`));
    for (const tag of task.tags) meta.append(el("li", { class: "tag" }, `#${tag}`));
    if (task.due) {
      meta.append(el("li", { class: isOverdue(task) ? "due overdue" : "due" },
        `${isOverdue(task) ? "Overdue: " : "Due "}${formatDue(task)}`));
    }
    if (task.recurrence) meta.append(el("li", { class: "repeat" }, `Repeats ${task.recurrence.summary}`));
    for (const r of task.reminders) meta.append(el("li", { class: "reminder" }, reminderText(r)));
    return el("li", { class: `task${task.completed ? " done" : ""}${isOverdue(task) ? " is-overdue" : ""}`, "data-id": task.id },
      check,
      el("div", { class: "task-body" },
        el("span", { class: "title", id: titleId }, task.title),
        task.description ? el("p", { class: "desc" }, task.description) : "",
        meta),
      el("div", { class: "task-actions" },
        el("button", { type: "button", class: "quiet", "aria-label": `Edit ${task.title}`, "data-focus-key": `edit-${task.id}`,
          onclick: () => form.edit(task) }, "Edit"),
        el("button", { type: "button", class: "quiet danger", "aria-label": `Delete ${task.title}`,
          onclick: () => remove(task) }, "Delete")));
  }

  async function run(action, control) {
    try {
      await action();
    } catch (err) {
      toast(`Failed: ${err.message}`, "error");
      if (control) control.checked = !control.checked;
    }
  }

  async function toggle(task) {
    const verb = task.completed ? "reopen" : "complete";
    const done = await api.post(`/api/tasks/${task.id}/${verb}`);
    announce(`${done.title} ${verb === "complete" ? "completed" : "reopened"}.`);
    await refresh();
  }

  async function remove(task) {
    if (!window.confirm(`Delete “${task.title}”?`)) return;
    await run(async () => {
      await api.del(`/api/tasks/${task.id}`);
      toast(`Deleted “${task.title}”.`);
      if (form.editing() && form.editing().id === task.id) form.reset();
      await refresh();
      $("#tasks-heading").focus();
    });
  }

  let timer = null;
  function refreshSoon(delay = 150) {
    clearTimeout(timer);
    timer = setTimeout(refresh, delay);
  }

  filters.addEventListener("input", (e) => refreshSoon(e.target.type === "search" || e.target.type === "text" ? 250 : 0));
  filters.addEventListener("change", () => refreshSoon(0));
  filters.addEventListener("submit", (e) => { e.preventDefault(); refreshSoon(0); });
  filters.addEventListener("reset", () => refreshSoon(0));
  more.addEventListener("click", () => load(query(PAGE, cursor), true));

  const form = createForm({ api, toast, timezone, refresh });

  return {
    refresh,
    refreshSoon,
    clear() { loadSeq++; shown = []; cursor = null; list.replaceChildren(); status.textContent = ""; form.reset(); },
  };
}

// ---- the add/edit form ------------------------------------------------------------------------

function createForm({ api, toast, refresh }) {
  const form = $("#task-form");
  const heading = $("#form-heading");
  const save = $("#save");
  const cancel = $("#cancel-edit");
  const error = $("#form-error");
  const repeat = $("#t-repeat");
  const ruleField = $("#t-rule-field");
  const summary = $("#t-repeat-summary");
  const rows = $("#t-reminders");
  const more = $("#task-more");
  let editing = null;
  let moreWasOpen = false;
  let original = null;
  let rowSeq = 0;

  repeat.addEventListener("change", () => {
    ruleField.hidden = repeat.value !== "custom";
    if (!ruleField.hidden) $("#t-rule").focus();
  });
  $("#add-reminder").addEventListener("click", () => addReminder({ minutes_before: 15 }, true));
  cancel.addEventListener("click", () => reset());
  form.addEventListener("keydown", (e) => { if (e.key === "Escape" && editing) reset(); });
  form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });

  function addReminder(reminder, focus) {
    const row = $("#reminder-row").content.firstElementChild.cloneNode(true);
    const n = ++rowSeq;
    for (const label of row.querySelectorAll("label[data-for]")) {
      const input = row.querySelector(`[data-role="${label.dataset.for}"]`);
      input.id = `rem-${n}-${label.dataset.for}`;
      label.htmlFor = input.id;
      label.dataset.text = label.textContent;
    }
    const kind = row.querySelector('[data-role="kind"]');
    const minutes = row.querySelector('[data-role="minutes"]');
    const at = row.querySelector('[data-role="at"]');
    const sync = () => { minutes.hidden = kind.value !== "before"; at.hidden = kind.value !== "at"; };
    if (reminder.at) {
      kind.value = "at";
      at.value = reminder.at.slice(0, 19);
    } else {
      minutes.value = String(reminder.minutes_before ?? 15);
    }
    sync();
    kind.addEventListener("change", sync);
    row.querySelector('[data-role="remove"]').addEventListener("click", () => {
      row.remove();
      renumber();
      $("#add-reminder").focus();
    });
    rows.append(row);
    renumber();
    if (focus) kind.focus();
  }

  // Labels say which row they belong to: "Reminder 2: Minutes before due".
  function renumber() {
    [...rows.children].forEach((row, i) => {
      for (const label of row.querySelectorAll("label[data-for]")) label.textContent = `Reminder ${i + 1}: ${label.dataset.text}`;
      row.querySelector('[data-role="remove"]').setAttribute("aria-label", `Remove reminder ${i + 1}`);
    });
  }

  function reminders() {
    return [...rows.children].map((row) => {
      const kind = row.querySelector('[data-role="kind"]').value;
      if (kind === "at") return { at: row.querySelector('[data-role="at"]').value };
      return { minutes_before: Number(row.querySelector('[data-role="minutes"]').value || 0) };
    });
  }

  // The form as request fields; each value encodes "unset" as null.
  function read() {
    const data = new FormData(form);
    const date = data.get("due_date");
    const time = data.get("due_time");
    const rule = repeat.value === "custom" ? String(data.get("rule") || "").trim() : repeat.value;
    const tags = splitTags(data.get("tags"));
    const rems = reminders();
    return {
      title: String(data.get("title") || "").trim(),
      description: String(data.get("description") || "").trim() || null,
      priority: data.get("priority"),
      tags: tags.length ? tags : null,
      due: date ? (time ? `${date}T${time}` : date) : null,
      recurrence: rule || null,
      reminders: rems.length ? rems : null,
    };
  }

  async function submit() {
    error.textContent = "";
    const fields = read();
    if (!fields.title) {
      error.textContent = "Title: please enter a title.";
      $("#t-title").focus();
      return;
    }
    try {
      if (editing) {
        const changes = {};
        for (const [name, value] of Object.entries(fields)) {
          if (JSON.stringify(value) !== JSON.stringify(original[name])) changes[name] = value;
        }
        if (Object.keys(changes).length) {
          const task = await api.patch(`/api/tasks/${editing.id}`, changes);
          toast(`Saved “${task.title}”.`);
        }
      } else {
        const body = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== null));
        if (body.priority === "none") delete body.priority;
        const task = await api.post("/api/tasks", body);
        toast(`Added “${task.title}”.`);
      }
      const added = !editing;
      reset();
      if (added) $("#t-title").focus(); // ready for the next one
      await refresh();
    } catch (err) {
      error.textContent = err.body && err.body.message ? err.body.message : err.message;
      const field = (err.body && err.body.field) || "";
      if (/description|tags|recurrence|reminders/.test(field + error.textContent)) more.open = true;
    }
  }

  function edit(task) {
    reset();
    moreWasOpen = more.open;
    more.open = true;
    editing = task;
    heading.textContent = `Edit “${task.title}”`;
    save.textContent = "Save changes";
    cancel.hidden = false;
    form.elements.title.value = task.title;
    form.elements.description.value = task.description || "";
    form.elements.priority.value = task.priority;
    form.elements.tags.value = task.tags.join(", ");
    if (task.due) {
      form.elements.due_date.value = task.due.slice(0, 10);
      form.elements.due_time.value = task.all_day ? "" : task.due.slice(11, 16);
    }
    if (task.recurrence) {
      const preset = PRESETS.includes(task.recurrence.summary) ? task.recurrence.summary : "custom";
      repeat.value = preset;
      form.elements.rule.value = preset === "custom" ? task.recurrence.rule : "";
      ruleField.hidden = preset !== "custom";
      summary.hidden = false;
      summary.textContent = `Now: ${task.recurrence.rule}`;
    }
    for (const r of task.reminders) addReminder(r, false);
    original = read();
    // Unchanged recurrence is sent back as it was, never re-derived from the select.
    if (task.recurrence) original.recurrence = repeat.value === "custom" ? task.recurrence.rule : repeat.value;
    form.scrollIntoView({ block: "nearest" });
    form.elements.title.focus();
  }

  function reset() {
    const wasEditing = editing;
    editing = null;
    original = null;
    form.reset();
    rows.replaceChildren();
    ruleField.hidden = true;
    summary.hidden = true;
    error.textContent = "";
    heading.textContent = "Add a task";
    save.textContent = "Add task";
    cancel.hidden = true;
    if (wasEditing) {
      more.open = moreWasOpen;
      const back = document.querySelector(`[data-focus-key="edit-${wasEditing.id}"]`);
      if (back) back.focus();
    }
  }

  return { edit, reset, editing: () => editing };
}

function splitTags(text) {
  return String(text || "")
    .split(",")
    .map((t) => t.trim().replace(/^#/, ""))
    .filter(Boolean);
}

function cap(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
