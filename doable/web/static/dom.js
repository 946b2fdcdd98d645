// Tiny DOM helpers: no framework, no innerHTML (text is always set as text).

export const $ = (selector, root = document) => root.querySelector(selector);

// el("button", {type: "button", onclick: fn, "aria-label": "…"}, "text", child, …)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "checked") node.checked = Boolean(value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === "" || child == null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A polite message for screen readers only.
export function announce(text) {
  const region = document.getElementById("announcer");
  if (region) region.textContent = text;
}
