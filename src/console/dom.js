// DOM helpers of the console: elements are built node by node and data goes in as text
// (textContent / attributes), never as markup, so nothing from the API can inject HTML.

/**
 * Builds an element. `attrs`: attribute name -> value (null/false: left out, true: empty
 * attribute); keys starting with "on" add event listeners. Children: nodes, strings (text
 * nodes), arrays, null (skipped).
 */
export function h(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

/** Sets a node's text only when it changed (no needless layout work). */
export function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

/** Masks a phone number: `+1•••••0123` (the country's first digit and the last four). */
function mask(number) {
  if (!number) return "—";
  const s = String(number);
  if (s.length <= 6) return "•".repeat(s.length);
  return s.slice(0, 2) + "•••••" + s.slice(-4);
}

/** A number as shown: masked unless `unmasked`. */
export function phone(number, unmasked) {
  return unmasked ? number || "—" : mask(number);
}

/** Seconds as `m:ss` or `h:mm:ss`. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh > 0 ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** An RFC 3339 time as local date and time (or "—"). */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

/** A ratio 0..1 as a percentage (or "—"). */
export function percent(value) {
  if (value === null || value === undefined) return "—";
  return `${(value * 100).toFixed(1)} %`;
}

/** JSON as readable text (for evidence, arguments and results). */
export function json(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

/** The page's `<main>`: marks it as page `name`, loading, and empties it. */
export function startPage(main, name) {
  main.dataset.page = name;
  main.dataset.ready = "false";
  main.replaceChildren();
}

/** Marks the page as loaded (what the browser tests wait on). */
export function ready(main, value = true) {
  main.dataset.ready = value ? "true" : "false";
}

/** A message line in a live region: `kind` is "ok" or "error". */
export function say(region, text, kind = "ok") {
  region.dataset.kind = kind;
  region.textContent = text;
}

/** A section with a heading and a body, labelled by the heading. */
export function section(id, title, ...body) {
  const headingId = `${id}-title`;
  return h("section", { id, class: "panel", "aria-labelledby": headingId },
    h("h2", { id: headingId }, title), ...body);
}

/** A two-column description list from [label, value] pairs (values as text or nodes). */
export function facts(pairs) {
  return h("dl", { class: "facts" },
    pairs.map(([label, value]) => [h("dt", {}, label), h("dd", {}, value ?? "—")]));
}

/** A table with a caption (visually hidden when `hideCaption`) and header cells. */
export function table(id, caption, headers) {
  const body = h("tbody");
  const node = h("table", { id, class: "grid" },
    h("caption", { class: "sr-only" }, caption),
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    body);
  return { table: node, body };
}

/** An "empty" row spanning the table. */
export function emptyRow(columns, text) {
  return h("tr", { class: "empty" }, h("td", { colspan: columns }, text));
}

/**
 * Asks for confirmation in `dialog#confirm` (modal); resolves true on `#confirm-yes`,
 * false on `#confirm-no` or Escape.
 */
export function confirmAction(message, yesLabel = "Confirm") {
  const dialog = document.getElementById("confirm");
  const yes = document.getElementById("confirm-yes");
  const no = document.getElementById("confirm-no");
  document.getElementById("confirm-message").textContent = message;
  yes.textContent = yesLabel;
  return new Promise((resolve) => {
    const done = (answer) => {
      yes.removeEventListener("click", onYes);
      no.removeEventListener("click", onNo);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const onYes = () => done(true);
    const onNo = () => done(false);
    const onCancel = (e) => {
      e.preventDefault();
      done(false);
    };
    yes.addEventListener("click", onYes);
    no.addEventListener("click", onNo);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    no.focus();
  });
}
