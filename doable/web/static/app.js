// The Doable console: sign-in, then tasks, live sync, notifications and chat.
// The token lives in memory and this tab's sessionStorage only; it never goes in a URL.

import { createApi, ApiError } from "./api.js";
import { $ } from "./dom.js";
import { createTasks } from "./tasks.js";
import { createLive, createToasts } from "./live.js";
import { createChat } from "./chat.js";

const SESSION_KEY = "doable.session";
const state = { session: readSession(), config: null, profile: null };

function readSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    return saved && saved.token ? saved : null;
  } catch {
    return null;
  }
}

function saveSession(session) {
  state.session = session;
  if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(SESSION_KEY);
}

const session = () => state.session;
let renewing = null;

// After a 401 or an expired stream: a local session gets a fresh token; a pasted one signs out.
function renew() {
  if (!renewing) {
    renewing = (async () => {
      const current = state.session;
      if (current && current.source === "local" && state.config && state.config.local_signin) {
        try {
          const minted = await mintLocal(current.userId);
          saveSession({ ...current, token: minted.token });
          return true;
        } catch {
          /* fall through to sign-out */
        }
      }
      signOut("Your session has expired. Please sign in again.");
      return false;
    })().finally(() => { renewing = null; });
  }
  return renewing;
}

const api = createApi(session, renew);
const toast = createToasts();
const timezone = () => (state.profile ? state.profile.timezone : "UTC");
const formatInstant = (iso) =>
  new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short", timeZone: timezone() }).format(new Date(iso));
const tasks = createTasks({ api, toast, timezone });
const live = createLive({ api, session, renew, tasks, toast, formatInstant });
let chat = null;

async function mintLocal(user) {
  const response = await fetch("/api/local/token", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(user ? { user } : {}),
    cache: "no-store",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function show(signedIn) {
  $("#signin").hidden = signedIn;
  $("#workspace").hidden = !signedIn;
  $("#session").hidden = !signedIn;
  document.body.dataset.state = signedIn ? "loading" : "signed-out";
}

async function enter() {
  state.profile = await api.get("/api/profile");
  saveSession({ ...state.session, userId: state.profile.user_id });
  $("#who").textContent = state.profile.user_id;
  showTimezone();
  show(true);
  await Promise.all([tasks.refresh(), live.start(), chat.start()]);
  document.body.dataset.state = "ready";
  $("#tasks-heading").focus();
}

function showTimezone() {
  const browser = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const mine = timezone();
  for (const node of document.querySelectorAll(".tz-name")) node.textContent = mine;
  const banner = $("#tz-banner");
  banner.hidden = !browser || browser === mine;
  if (!banner.hidden) {
    $("#tz-text").textContent = `Times are shown in ${mine}, your Doable timezone. This browser is in ${browser}.`;
    $("#tz-use").textContent = `Use ${browser}`;
    $("#tz-use").onclick = async () => {
      try {
        state.profile = await api.put("/api/profile", { timezone: browser });
        showTimezone();
        await tasks.refresh();
        toast(`Timezone set to ${browser}.`);
      } catch (err) {
        toast(`Failed: ${err.message}`, "error");
      }
    };
  }
}

function signOut(message = "") {
  live.stop();
  saveSession(null);
  state.profile = null;
  tasks.clear();
  if (chat) chat.reset();
  show(false);
  $("#signin-error").textContent = message;
  $("#local-signin").hidden = !(state.config && state.config.local_signin);
  ($("#local-signin").hidden ? $("#token-input") : $("#local-button")).focus();
}

async function signIn(newSession) {
  saveSession(newSession);
  try {
    await enter();
  } catch (err) {
    const message = err.status === 401 ? `That token was not accepted: ${err.message}` : `Sign-in failed: ${err.message}`;
    signOut(message);
  }
}

$("#local-button").addEventListener("click", async () => {
  live.askPermission(); // a user gesture: the one moment browsers let a page ask
  $("#signin-error").textContent = "";
  try {
    const minted = await mintLocal();
    await signIn({ token: minted.token, userId: minted.user_id, source: "local" });
  } catch (err) {
    $("#signin-error").textContent = `Local sign-in failed: ${err.message}`;
  }
});

$("#token-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  live.askPermission();
  const field = $("#token-input");
  const token = field.value.trim().replace(/^Bearer\s+/i, "");
  field.value = "";
  if (token) await signIn({ token, userId: null, source: "pasted" });
});

$("#sign-out").addEventListener("click", () => signOut());

async function boot() {
  try {
    state.config = await (await fetch("/api/console/config", { cache: "no-store" })).json();
  } catch {
    state.config = { local_signin: false, chatkit_domain_key: null };
  }
  chat = createChat({ api, session, renew, config: state.config, tasks, toast });
  if (state.session) await signIn(state.session);
  else signOut();
}

boot();
