// Chat: the ChatKit web component (when a domain key is configured), otherwise a plain panel over
// the spec's endpoint, POST /api/{user_id}/chat, with the reply revealed word by word.

import { $, el } from "./dom.js";

const CHATKIT_SRC = "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js";

export function createChat({ api, session, renew, config, tasks, toast }) {
  const log = $("#chat-log");
  const form = $("#chat-form");
  const input = $("#chat-input");
  const send = $("#chat-send");
  const plain = $("#chat-plain");
  const host = $("#chatkit-host");
  const newChat = $("#new-chat");
  let chatkit = null;

  const storageKey = () => `doable.chat.${session() ? session().userId : ""}`;
  const conversation = () => sessionStorage.getItem(storageKey());

  form.addEventListener("submit", (e) => { e.preventDefault(); say(); });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      say();
    }
  });
  newChat.addEventListener("click", () => {
    sessionStorage.removeItem(storageKey());
    log.replaceChildren();
    if (chatkit) chatkit.setThreadId(null);
    input.focus();
  });

  async function say() {
    const text = input.value.trim();
    const current = session();
    if (!text || !current || send.disabled) return;
    input.value = "";
    log.append(el("li", { class: "msg user" }, el("span", { class: "sr-only" }, "You: "), text));
    const reply = el("li", { class: "msg assistant pending", "aria-busy": "true" },
      el("span", { class: "sr-only" }, "Doable: "), el("span", { class: "text" }, "Thinking…"));
    log.append(reply);
    reply.scrollIntoView({ block: "nearest" });
    send.disabled = true;
    try {
      const body = { message: text };
      if (conversation()) body.conversation_id = conversation();
      const answer = await api.post(`/api/${encodeURIComponent(current.userId)}/chat`, body);
      sessionStorage.setItem(storageKey(), answer.conversation_id);
      await reveal(reply.querySelector(".text"), answer.response || "(no reply)");
      if (answer.tool_calls && answer.tool_calls.length) {
        const used = [...new Set(answer.tool_calls.map((c) => c.tool))].join(", ");
        reply.append(el("span", { class: "tools" }, `Used: ${used}`));
        tasks.refreshSoon(0);
      }
    } catch (err) {
      reply.classList.add("error");
      reply.querySelector(".text").textContent = err.body && err.body.message ? err.body.message : err.message;
      if (err.status === 404 && conversation()) sessionStorage.removeItem(storageKey());
    } finally {
      reply.classList.remove("pending");
      reply.setAttribute("aria-busy", "false");
      send.disabled = false;
      input.focus();
    }
  }

  // The spec endpoint answers with the whole reply; show it progressively, as a stream would.
  async function reveal(node, text) {
    if (window.matchMedia("(prefers-reduced-motion: reduce)").matches) {
      node.textContent = text;
      return;
    }
    node.textContent = "";
    const words = text.split(/(\s+)/);
    for (let i = 0; i < words.length; i += 2) {
      node.textContent += words[i] + (words[i + 1] || "");
      await new Promise((r) => setTimeout(r, 18));
    }
  }

  // After a reload, the plain panel shows the conversation so far (the thread lives on the server).
  async function restore() {
    const threadId = conversation();
    if (!threadId) return;
    try {
      const page = await api.post("/chatkit", { type: "items.list", params: { thread_id: threadId, order: "desc", limit: 30 } });
      for (const item of page.data.reverse()) {
        const text = (item.content || []).map((part) => part.text || "").join("");
        if (item.type === "user_message") log.append(el("li", { class: "msg user" }, el("span", { class: "sr-only" }, "You: "), text));
        if (item.type === "assistant_message") {
          log.append(el("li", { class: "msg assistant" }, el("span", { class: "sr-only" }, "Doable: "), el("span", { class: "text" }, text)));
        }
      }
    } catch {
      sessionStorage.removeItem(storageKey());
    }
  }

  async function mountChatKit() {
    if (customElements.get("openai-chatkit")) return showChatKit();
    await new Promise((resolve, reject) => {
      const script = el("script", { src: CHATKIT_SRC, async: true });
      script.addEventListener("load", resolve);
      script.addEventListener("error", () => reject(new Error("ChatKit could not be loaded")));
      document.head.append(script);
    });
    await Promise.race([
      customElements.whenDefined("openai-chatkit"),
      new Promise((_, reject) => setTimeout(() => reject(new Error("ChatKit did not start")), 10000)),
    ]);
    return showChatKit();
  }

  function showChatKit() {
    const element = document.createElement("openai-chatkit");
    element.setOptions({
      api: { url: "/chatkit", domainKey: config.chatkit_domain_key, fetch: authorizedFetch },
      theme: window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light",
      frameTitle: "Doable chat",
      history: { enabled: true },
      startScreen: {
        greeting: "What needs doing?",
        prompts: [
          { label: "What's due today?", prompt: "What's due today?" },
          { label: "Add a task", prompt: "Add buy milk tomorrow at 9, high priority" },
        ],
      },
      composer: { placeholder: "add buy milk tomorrow at 9, high priority" },
    });
    element.addEventListener("chatkit.response.end", () => tasks.refreshSoon(0));
    host.replaceChildren(element);
    host.hidden = false;
    plain.hidden = true;
    chatkit = element;
  }

  // ChatKit's requests to /chatkit, with this tab's bearer token (renewed once on a 401).
  async function authorizedFetch(resource, init = {}) {
    const attempt = () => {
      const headers = new Headers(init.headers || {});
      if (session()) headers.set("Authorization", `Bearer ${session().token}`);
      return fetch(resource, { ...init, headers });
    };
    const response = await attempt();
    if (response.status === 401 && (await renew())) return attempt();
    return response;
  }

  return {
    async start() {
      log.replaceChildren();
      if (config.chatkit_domain_key && !chatkit) {
        try {
          await mountChatKit();
        } catch (err) {
          toast(`${err.message}; using the plain chat panel.`, "error");
        }
      }
      if (!chatkit) await restore();
      document.body.dataset.chat = chatkit ? "chatkit" : "plain";
    },
    reset() {
      log.replaceChildren();
      if (chatkit) {
        chatkit.remove(); // the next user gets a fresh component, not the last user's thread
        chatkit = null;
        host.hidden = true;
        plain.hidden = false;
      }
    },
  };
}
