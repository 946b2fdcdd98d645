// HTTP to the Doable API with a bearer token, and a Server-Sent Events reader over fetch()
// (EventSource cannot send an Authorization header, and the token must never go in a URL).

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.detail)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// `session()` returns the current {token, userId} or null; `renew()` may get a fresh token
// after a 401 (local sign-in) and returns true when it did.
export function createApi(session, renew) {
  async function request(method, path, body, retried = false) {
    const current = session();
    const headers = { Accept: "application/json" };
    if (current) headers.Authorization = `Bearer ${current.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    if (response.status === 401 && !retried && current && (await renew())) {
      return request(method, path, body, true);
    }
    const text = await response.text();
    const data = text ? safeJson(text) : null;
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }
  return {
    get: (path) => request("GET", path),
    post: (path, body) => request("POST", path, body),
    patch: (path, body) => request("PATCH", path, body),
    put: (path, body) => request("PUT", path, body),
    del: (path) => request("DELETE", path),
  };
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text };
  }
}

// Reads one SSE response body, calling onEvent({event, data, id}) per event (data parsed as JSON).
export async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { event: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (event.data.length) {
          let data = event.data.join("\n");
          try {
            data = JSON.parse(data);
          } catch {
            /* a plain-text event */
          }
          onEvent({ event: event.event, data, id: event.id });
        }
        event = { event: "message", data: [], id: null };
        continue;
      }
      if (line.startsWith(":")) continue; // keep-alive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const raw = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") event.data.push(raw);
      else if (field === "event") event.event = raw;
      else if (field === "id") event.id = raw;
    }
  }
}

// Keeps one stream open: reconnects with backoff, refreshes the token when the server says it
// expired, and stops when `signal` aborts. `lastEventId()` is sent as Last-Event-ID. onOpen and
// onClose are called as each connection starts and ends (to refetch what a gap may have missed).
export function keepStreaming(path, { session, renew, onEvent, onOpen, onClose, lastEventId, signal }) {
  let delay = 1000;
  (async () => {
    while (!signal.aborted) {
      const current = session();
      if (!current) return;
      let expired = false;
      try {
        const headers = { Accept: "text/event-stream", Authorization: `Bearer ${current.token}` };
        const last = lastEventId && lastEventId();
        if (last) headers["Last-Event-ID"] = last;
        const response = await fetch(path, { headers, signal, cache: "no-store" });
        if (response.status === 401) {
          expired = true;
        } else if (response.ok) {
          delay = 1000;
          onOpen && onOpen();
          await readEvents(response, (ev) => {
            if (ev.event === "expired") expired = true;
            else onEvent(ev);
          });
        }
      } catch {
        if (signal.aborted) return;
      }
      onClose && onClose();
      if (expired && !(await renew())) return;
      if (!expired) {
        await sleep(delay, signal);
        delay = Math.min(delay * 2, 30000);
      }
    }
  })();
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal && signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
