// Live streams: task updates keep this tab's list in sync; reminder notifications raise a browser
// Notification, an in-page toast and the unread badge. Also the toasts and the inbox dialog.

import { $, el } from "./dom.js";
import { keepStreaming } from "./api.js";

export function createToasts() {
  const region = $("#toasts");
  return function toast(text, kind = "info", { timeout = 6000, title = null } = {}) {
    const close = el("button", { type: "button", class: "toast-close", "aria-label": "Dismiss" }, "×");
    const node = el("div", { class: `toast toast-${kind}` },
      el("div", { class: "toast-text" }, title ? el("strong", {}, title) : "", title ? " " : "", text),
      close);
    const remove = () => node.remove();
    close.addEventListener("click", remove);
    region.append(node);
    if (timeout) setTimeout(remove, timeout);
    return node;
  };
}

export function createLive({ api, session, renew, tasks, toast, formatInstant }) {
  const badge = $("#badge");
  const bell = $("#bell");
  const dialog = $("#notifications");
  const listNode = $("#notification-list");
  const permissionButton = $("#notify-permission");
  let controller = null;
  let lastNotificationId = null;
  const open = { updates: false, notifications: false };

  function setOpen(name, value) {
    open[name] = value;
    document.body.dataset.live = open.updates && open.notifications ? "on" : "off";
  }

  async function start() {
    stop();
    controller = new AbortController();
    const signal = controller.signal;
    updatePermissionButton();
    try {
      const inbox = await api.get("/api/notifications?limit=1");
      lastNotificationId = inbox.notifications.length ? String(inbox.notifications[0].id) : null;
      setBadge(inbox.unread);
    } catch {
      /* the badge stays empty; the stream still works */
    }
    keepStreaming("/api/updates/stream", {
      session, renew, signal,
      onOpen: () => { setOpen("updates", true); tasks.refreshSoon(); },
      onEvent: (ev) => { if (ev.event === "task" || ev.event === "overflow") tasks.refreshSoon(); },
      onClose: () => setOpen("updates", false),
    });
    keepStreaming("/api/notifications/stream", {
      session, renew, signal,
      lastEventId: () => lastNotificationId,
      onOpen: () => setOpen("notifications", true),
      onEvent: (ev) => {
        if (ev.event === "notification" && ev.data && typeof ev.data === "object") {
          if (ev.id) lastNotificationId = ev.id;
          notify(ev.data);
        }
      },
      onClose: () => setOpen("notifications", false),
    });
  }

  function stop() {
    if (controller) controller.abort();
    controller = null;
    setOpen("updates", false);
    setOpen("notifications", false);
    setBadge(0);
  }

  function describe(note) {
    const due = note.due_at || note.due;
    return due ? `Due ${formatInstant(due)}` : "It's time.";
  }

  function notify(note) {
    const title = note.title || "a task";
    toast(describe(note), "reminder", { title: `Reminder: ${title}`, timeout: 15000 });
    if ("Notification" in window && Notification.permission === "granted") {
      try {
        const shown = new Notification(`Reminder: ${title}`, { body: describe(note), tag: `doable-${note.id}` });
        shown.onclick = () => { window.focus(); openInbox(); };
      } catch {
        /* some browsers only allow notifications from a service worker; the toast is there */
      }
    }
    refreshBadge();
  }

  async function refreshBadge() {
    try {
      setBadge((await api.get("/api/notifications?unread_only=true&limit=1")).unread);
    } catch {
      /* keep the last count */
    }
  }

  function setBadge(unread) {
    badge.hidden = !unread;
    badge.textContent = unread ? String(unread) : "";
    bell.setAttribute("aria-label", unread ? `Notifications, ${unread} unread` : "Notifications");
  }

  async function openInbox() {
    listNode.replaceChildren(el("li", {}, "Loading…"));
    if (!dialog.open) dialog.showModal();
    try {
      const inbox = await api.get("/api/notifications?limit=50");
      setBadge(inbox.unread);
      listNode.replaceChildren(...(inbox.notifications.length
        ? inbox.notifications.map(row)
        : [el("li", { class: "empty" }, "No notifications yet.")]));
    } catch (err) {
      listNode.replaceChildren(el("li", { class: "error" }, `Could not load notifications: ${err.message}`));
    }
  }

  function row(note) {
    const mark = el("button", { type: "button", class: "quiet", "aria-label": `Mark “${note.title}” read` }, "Mark read");
    mark.addEventListener("click", async () => {
      await markRead([note.id]);
      openInbox();
    });
    return el("li", { class: note.read ? "read" : "unread" },
      el("div", {},
        el("strong", {}, note.title),
        el("span", { class: "when" }, ` ${note.due ? `due ${formatInstant(note.due)}` : ""}`),
        note.read ? "" : el("span", { class: "sr-only" }, " (unread)")),
      note.read ? "" : mark);
  }

  async function markRead(ids) {
    try {
      setBadge((await api.post("/api/notifications/read", { ids })).unread);
    } catch (err) {
      toast(`Failed: ${err.message}`, "error");
    }
  }

  function updatePermissionButton() {
    permissionButton.hidden = !("Notification" in window) || Notification.permission !== "default";
  }

  async function askPermission() {
    if ("Notification" in window && Notification.permission === "default") {
      try {
        await Notification.requestPermission();
      } catch {
        /* older browsers take a callback; ignore */
      }
    }
    updatePermissionButton();
  }

  bell.addEventListener("click", openInbox);
  $("#close-notifications").addEventListener("click", () => dialog.close());
  $("#mark-all").addEventListener("click", async () => { await markRead("all"); openInbox(); });
  permissionButton.addEventListener("click", askPermission);

  return { start, stop, askPermission };
}
