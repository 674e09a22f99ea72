// Live calls (`#/live`): the tenant's live calls from `GET /api/v1/active-sessions/stream`
// (a snapshot of `started` events, then `started` / `updated` / `ended` deltas) kept in a
// Map; only the rows whose call changed are redrawn, the table is paged (50 rows, newest
// first) and durations tick client-side. A selected call's transcript comes from
// `GET /api/v1/active-sessions/calls/{call_id}/stream` (`state`, `turn`, `tool_call`,
// `ended`), with hang-up and transfer-to-queue actions and a "place a call" form.

import { api, authHeaders, aborted, hasScope, query, session } from "./api.js";
import { readStream } from "./sse.js";
import {
  confirmAction, duration, emptyRow, h, json, phone, ready, say, setText, startPage,
} from "./dom.js";

const PAGE_SIZE = 50;
const COLUMNS = ["direction", "from", "to", "agent", "duration", "state"];
const STATE_LABELS = {
  greeting: "greeting",
  listening: "listening",
  speaking: "speaking",
  tool: "tool running",
  handoff: "handoff",
};

/** An id shortened for a dense cell (`agv_73c4…`); the full id goes in a title. */
function shortId(id) {
  return id && id.length > 10 ? `${id.slice(0, 8)}…` : id || "";
}

/** The label of a live state. */
function stateLabel(state) {
  return STATE_LABELS[state] || state || "—";
}

export function mount(main, signal) {
  startPage(main, "live");
  const view = new LiveView(main, signal);
  view.start();
}

class LiveView {
  constructor(main, signal) {
    this.main = main;
    this.signal = signal;
    this.calls = new Map(); // call_id -> { view, startMs, seen: the event count when last changed }
    this.rows = new Map(); // call_id -> <tr> (only rows of the shown page)
    this.dirty = new Set();
    this.page = 0;
    this.unmasked = false;
    this.scheduled = false;
    this.events = 0;
    this.watcher = null;
  }

  start() {
    const { table, body } = tableOf();
    this.body = body;
    this.count = h("strong", { id: "live-count" }, "0");
    this.unmask = h("input", { id: "live-unmask", type: "checkbox" });
    this.unmask.addEventListener("change", () => {
      this.unmasked = this.unmask.checked;
      for (const id of this.rows.keys()) this.dirty.add(id);
      this.schedule();
    });
    this.prev = h("button", { id: "live-page-prev", type: "button", "aria-label": "Previous page of calls" }, "‹ Newer");
    this.next = h("button", { id: "live-page-next", type: "button", "aria-label": "Next page of calls" }, "Older ›");
    this.pageInfo = h("span", { id: "live-page-info", "aria-live": "polite" });
    this.prev.addEventListener("click", () => this.turnPage(-1));
    this.next.addEventListener("click", () => this.turnPage(1));
    this.status = h("p", { id: "live-status", role: "status", class: "message" });
    this.panelSlot = h("div", { class: "transcript-slot" });

    this.main.append(
      h("header", { class: "page-head" },
        h("h1", {}, "Live calls"),
        h("p", { class: "count" }, "Live now: ", this.count),
        h("label", { class: "toggle" }, this.unmask, " Show numbers")),
      hasScope("runtime") ? this.placeCallForm() : null,
      this.status,
      h("div", { class: "live-layout" },
        h("div", { class: "live-list" },
          h("div", { class: "table-wrap" }, table),
          h("div", { class: "pager" }, this.prev, this.pageInfo, this.next)),
        this.panelSlot));
    this.body.append(emptyRow(COLUMNS.length + 1, "Connecting…"));

    const ticker = setInterval(() => this.tick(), 1000);
    this.signal.addEventListener("abort", () => clearInterval(ticker), { once: true });
    this.load().then(() => {
      if (!this.signal.aborted) this.connect();
    });
  }

  /** The calls live now, drawn before the stream opens (so "ready" means they are shown). */
  async load() {
    try {
      const listed = await api("/api/v1/active-sessions", { signal: this.signal });
      for (const view of listed.data || []) this.apply("started", view);
      this.render();
    } catch (e) {
      if (aborted(e)) return;
      say(this.status, `Live calls: ${e.describe ? e.describe() : e.message}`, "error");
    }
    ready(this.main);
  }

  connect() {
    readStream("/api/v1/active-sessions/stream", authHeaders("tenant"), {
      signal: this.signal,
      onOpen: () => {
        say(this.status, "");
        this.reconcile();
        this.schedule();
      },
      onEvent: (type, data) => this.apply(type, data),
      onError: (error, retrying) => {
        say(this.status, `Live stream: ${error.describe()}${retrying ? " (reconnecting…)" : ""}`, "error");
        if (!retrying) {
          this.body.replaceChildren(emptyRow(COLUMNS.length + 1, "Live calls are not available."));
        }
        ready(this.main);
      },
    });
  }

  /** Applies one event of the list stream to the Map. */
  apply(type, data) {
    if (!data || typeof data !== "object" || !data.call_id) return;
    this.events += 1;
    const id = data.call_id;
    if (type === "started" || type === "updated") {
      const startMs = Date.parse(data.started_at);
      this.calls.set(id, {
        view: data,
        startMs: Number.isNaN(startMs) ? Date.now() : startMs,
        seen: this.events,
      });
      if (this.watcher && this.watcher.callId === id) this.watcher.fromList(data);
    } else if (type === "ended") {
      this.calls.delete(id);
      if (this.watcher && this.watcher.callId === id) this.watcher.listEnded(data.reason);
    } else {
      return;
    }
    this.dirty.add(id);
    this.schedule();
  }

  /**
   * On each (re)connection: drops the calls the server no longer lists and no event touched
   * since the list was asked for (their `ended` may have gone by before the stream opened,
   * or be older than its backlog).
   */
  async reconcile() {
    const before = this.events;
    try {
      const listed = await api("/api/v1/active-sessions", { signal: this.signal });
      const live = new Set((listed.data || []).map((c) => c.call_id));
      for (const [id, call] of [...this.calls]) {
        if (!live.has(id) && call.seen <= before) {
          this.calls.delete(id);
          this.dirty.add(id);
        }
      }
      this.schedule();
    } catch (e) {
      if (!aborted(e)) say(this.status, `Live calls: ${e.describe ? e.describe() : e.message}`, "error");
    }
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      if (!this.signal.aborted) this.render();
    });
  }

  sorted() {
    return [...this.calls.entries()].sort((a, b) => b[1].startMs - a[1].startMs
      || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  turnPage(delta) {
    this.page += delta;
    for (const id of this.rows.keys()) this.dirty.add(id);
    this.render();
  }

  render() {
    const total = this.calls.size;
    setText(this.count, String(total));
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    this.page = Math.min(Math.max(this.page, 0), pages - 1);
    const first = this.page * PAGE_SIZE;
    const shown = this.sorted().slice(first, first + PAGE_SIZE);
    const shownIds = new Set(shown.map(([id]) => id));
    for (const [id, row] of this.rows) {
      if (!shownIds.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    if (total === 0) {
      if (!this.body.querySelector("tr.empty")) {
        this.body.replaceChildren(emptyRow(COLUMNS.length + 1, "No live calls."));
      }
    } else {
      const placeholder = this.body.querySelector("tr.empty");
      if (placeholder) placeholder.remove();
    }
    let cursor = this.body.firstElementChild;
    for (const [id, call] of shown) {
      let row = this.rows.get(id);
      if (!row) {
        row = this.rowFor(id);
        this.rows.set(id, row);
        this.fill(row, call);
      } else if (this.dirty.has(id)) {
        this.fill(row, call);
      }
      if (row !== cursor) this.body.insertBefore(row, cursor);
      else cursor = cursor.nextElementSibling;
    }
    this.dirty.clear();
    setText(this.pageInfo, total === 0 ? "" : `${first + 1}–${first + shown.length} of ${total}`);
    this.prev.disabled = this.page === 0;
    this.next.disabled = this.page >= pages - 1;
  }

  rowFor(id) {
    const cells = {};
    const row = h("tr", { "data-call-id": id });
    for (const col of COLUMNS) {
      cells[col] = h("td", { "data-col": col });
      row.append(cells[col]);
    }
    const watch = h("button", {
      type: "button", "data-action": "watch", "aria-label": `Watch call ${id}`,
    }, "Watch");
    row.append(h("td", { class: "actions" }, watch));
    row.cells_ = cells;
    row.addEventListener("click", (e) => {
      if (e.target.closest("a")) return;
      this.watch(id);
    });
    return row;
  }

  fill(row, { view, startMs }) {
    const c = row.cells_;
    setText(c.direction, view.direction);
    setText(c.from, phone(view.from, this.unmasked));
    setText(c.to, phone(view.to, this.unmasked));
    const version = view.agent_version_id ? ` · ${shortId(view.agent_version_id)}` : "";
    setText(c.agent, `${view.agent_key || "—"}${version}`);
    if (view.agent_version_id) c.agent.title = `version ${view.agent_version_id}`;
    setText(c.duration, duration((Date.now() - startMs) / 1000));
    setText(c.state, stateLabel(view.state));
    c.state.dataset.state = view.state || "";
    row.classList.toggle("watching", !!this.watcher && this.watcher.callId === view.call_id);
  }

  /** Every second: the shown rows' durations. */
  tick() {
    const now = Date.now();
    for (const [id, row] of this.rows) {
      const call = this.calls.get(id);
      if (call) setText(row.cells_.duration, duration((now - call.startMs) / 1000));
    }
  }

  watch(callId) {
    if (this.watcher) this.watcher.close();
    const call = this.calls.get(callId);
    this.watcher = new Transcript(callId, call ? call.view : null, this.signal, () => {
      this.watcher = null;
      for (const row of this.rows.values()) row.classList.remove("watching");
    });
    this.panelSlot.replaceChildren(this.watcher.panel);
    for (const [id, row] of this.rows) row.classList.toggle("watching", id === callId);
    this.watcher.start();
  }

  placeCallForm() {
    const to = h("input", {
      id: "place-call-to", type: "tel", inputmode: "tel", placeholder: "+15005550010",
      autocomplete: "off", pattern: "\\+[1-9][0-9]{6,14}",
    });
    const button = h("button", { id: "place-call", type: "submit" }, "Place call");
    const result = h("p", { id: "place-call-result", role: "status", class: "message" });
    const form = h("form", { class: "inline-form", "aria-label": "Place a call" },
      h("label", { for: "place-call-to" }, "Call a number (E.164)"), to, button, result);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const number = to.value.trim();
      if (!number) {
        say(result, "Enter the number to call, e.g. +15005550010.", "error");
        return;
      }
      button.disabled = true;
      say(result, "Placing the call…");
      try {
        const placed = await api("/api/v1/make-call", {
          method: "POST", body: { to: number }, signal: this.signal,
        });
        result.dataset.callId = placed.call_id;
        say(result, `Call placed: ${placed.call_id} (${placed.status}).`);
      } catch (err) {
        if (!aborted(err)) say(result, `Could not place the call: ${err.describe ? err.describe() : err.message}`, "error");
      } finally {
        button.disabled = false;
      }
    });
    return form;
  }
}

function tableOf() {
  const body = h("tbody");
  const table = h("table", { id: "live-table", class: "grid" },
    h("caption", { class: "sr-only" }, "Live calls, newest first"),
    h("thead", {}, h("tr", {},
      ["Direction", "From", "To", "Agent · version", "Duration", "State"]
        .map((t) => h("th", { scope: "col" }, t)),
      h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Transcript")))),
    body);
  return { table, body };
}

/** The live transcript panel of one call and its actions. */
class Transcript {
  constructor(callId, view, pageSignal, onClose) {
    this.callId = callId;
    this.view = view;
    this.controller = new AbortController();
    this.pageSignal = pageSignal;
    this.onClose = onClose;
    this.items = new Map(); // "turn:<id>" | "tool:<id>" -> <li>
    this.fallback = false;
    this.lastLine = null;
    this.ended = false;
    this.build();
  }

  build() {
    this.meta = h("p", { class: "call-meta", id: "live-transcript-state" });
    this.list = h("ol", { class: "turns", id: "live-turns", "aria-live": "polite", "aria-label": "Transcript" });
    this.error = h("p", { id: "live-transcript-error", role: "alert", class: "message", "data-kind": "error" });
    this.queue = h("select", { id: "transfer-queue" }, h("option", { value: "" }, "Loading queues…"));
    this.transferButton = h("button", { id: "transfer", type: "button" }, "Transfer");
    this.hangupButton = h("button", { id: "hangup", type: "button", class: "danger" }, "Hang up");
    this.result = h("p", { id: "action-result", role: "status", class: "message" });
    const close = h("button", { type: "button", class: "close", "aria-label": "Close the transcript" }, "×");
    close.addEventListener("click", () => this.close());
    this.transferButton.addEventListener("click", () => this.transfer());
    this.hangupButton.addEventListener("click", () => this.hangup());
    this.panel = h("section", {
      id: "live-transcript", class: "panel transcript", "data-call-id": this.callId,
      "aria-labelledby": "live-transcript-title",
    },
    h("header", { class: "panel-head" },
      h("h2", { id: "live-transcript-title" }, "Live transcript"), close),
    h("p", { class: "call-id" }, this.callId),
    this.meta,
    this.error,
    this.list,
    h("div", { class: "call-actions" },
      h("label", { for: "transfer-queue" }, "Transfer to queue"), this.queue,
      this.transferButton, this.hangupButton),
    this.result);
    this.showState(this.view);
  }

  start() {
    const signal = this.controller.signal;
    this.pageSignal.addEventListener("abort", () => this.controller.abort(), { once: true });
    this.loadQueues(signal);
    readStream(`/api/v1/active-sessions/calls/${encodeURIComponent(this.callId)}/stream`,
      authHeaders("tenant"), {
        signal,
        onOpen: () => say(this.error, ""),
        onEvent: (type, data) => this.apply(type, data),
        onError: (error, retrying) => {
          if (retrying) {
            say(this.error, `Transcript stream: ${error.describe()} (reconnecting…)`, "error");
            return;
          }
          say(this.error, `Live transcript not available: ${error.describe()}. `
            + "Showing the last line of each change from the live list instead.", "error");
          this.fallback = true;
          if (this.view) this.fromList(this.view);
        },
      });
  }

  close() {
    this.controller.abort();
    this.panel.remove();
    this.onClose();
  }

  apply(type, data) {
    if (type === "state") {
      this.view = data;
      this.showState(data);
    } else if (type === "turn") {
      this.upsert(`turn:${data.id}`, turnItem(data));
    } else if (type === "tool_call") {
      this.upsert(`tool:${data.id}`, toolItem(data));
    } else if (type === "ended") {
      this.end(data.reason);
      return "stop";
    }
    return undefined;
  }

  upsert(key, item) {
    // Follow the newest turn only when the reader is at the bottom of the list already.
    const list = this.list;
    const following = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
    const old = this.items.get(key);
    if (old) old.replaceWith(item);
    else list.append(item);
    this.items.set(key, item);
    if (following) list.scrollTop = list.scrollHeight;
  }

  showState(view) {
    if (!view) {
      setText(this.meta, "");
      return;
    }
    setText(this.meta, `${view.direction || ""} · ${view.agent_key || "—"} · ${stateLabel(view.state)}`);
    this.meta.dataset.state = view.state || "";
  }

  /** An `updated` of the list stream (the transcript's fallback when its stream is missing). */
  fromList(view) {
    this.view = view;
    this.showState(view);
    if (!this.fallback || !view.last_transcript) return;
    const line = view.last_transcript;
    const key = `${line.role}\u0000${line.text}`;
    if (key === this.lastLine) return;
    this.lastLine = key;
    this.list.append(turnItem({ role: line.role, text: line.text, interrupted: false }));
  }

  listEnded(reason) {
    if (this.fallback) this.end(reason);
  }

  end(reason) {
    if (this.ended) return;
    this.ended = true;
    this.hangupButton.disabled = true;
    this.transferButton.disabled = true;
    this.queue.disabled = true;
    this.panel.append(h("p", { id: "live-transcript-ended", class: "ended" },
      `Call ended${reason ? ` (${reason})` : ""}. `,
      h("a", { href: `#/calls/${encodeURIComponent(this.callId)}` }, "Open the call detail")));
  }

  async loadQueues(signal) {
    try {
      const page = await api(`/api/v1/operator-queues${query({ limit: 100 })}`, { signal });
      const queues = (page.data || []).filter((q) => q.numbers && q.numbers.length > 0);
      this.queues = new Map(queues.map((q) => [q.id, q]));
      this.queue.replaceChildren(...(queues.length
        ? queues.map((q) => h("option", { value: q.id }, `${q.name}${q.open_now === false ? " (closed now)" : ""}`))
        : [h("option", { value: "" }, "No queue with numbers")]));
      this.transferButton.disabled = this.ended || queues.length === 0;
    } catch (e) {
      if (aborted(e)) return;
      this.queue.replaceChildren(h("option", { value: "" }, "Queues not available"));
      this.transferButton.disabled = true;
      say(this.result, `Queues: ${e.describe ? e.describe() : e.message}`, "error");
    }
  }

  async hangup() {
    if (!(await confirmAction(`Hang up call ${this.callId}? The caller is disconnected.`, "Hang up"))) return;
    await this.act("Hang-up sent", `/api/v1/calls/${encodeURIComponent(this.callId)}/hangup`, undefined);
  }

  async transfer() {
    const queue = this.queues && this.queues.get(this.queue.value);
    if (!queue) {
      say(this.result, "Choose a queue to transfer to.", "error");
      return;
    }
    if (!(await confirmAction(`Transfer call ${this.callId} to the ${queue.name} queue?`, "Transfer"))) return;
    // A handoff to the queue, as the agent's escalation makes one: its numbers, ring
    // timeout and announcement, the handoff record with who asked, and the queue's
    // `when_unanswered` when nobody answers.
    const body = { queue_id: queue.id };
    const operator = (session() || {}).operator;
    if (operator) body.requested_by = operator;
    await this.act(`Transfer to ${queue.name} sent`,
      `/api/v1/calls/${encodeURIComponent(this.callId)}/transfer`, body);
  }

  async act(done, path, body) {
    say(this.result, "Working…");
    try {
      const call = await api(path, { method: "POST", body, signal: this.controller.signal });
      say(this.result, `${done}. Call ${call.id}: ${call.status}.`);
    } catch (e) {
      if (!aborted(e)) say(this.result, `Failed: ${e.describe ? e.describe() : e.message}`, "error");
    }
  }
}

/** One transcript turn (`interrupted`: a barge-in, with what the caller heard). */
export function turnItem(turn) {
  const speaker = turn.role === "user" ? "Caller" : "Agent";
  const item = h("li", { class: "turn", "data-role": turn.role },
    h("span", { class: "speaker" }, speaker));
  if (turn.id !== undefined && turn.id !== null) item.dataset.turnId = String(turn.id);
  if (turn.interrupted) {
    item.classList.add("barge-in");
    item.append(
      h("span", { class: "text" }, turn.heard_text || ""),
      h("span", { class: "barge-in-marker", title: `Said in full: ${turn.text || ""}` }, "barged in"));
  } else {
    item.append(h("span", { class: "text" }, turn.text || ""));
  }
  return item;
}

/** One tool call, with its result or error once it completed. */
export function toolItem(call) {
  const item = h("li", {
    class: "tool-call", "data-name": call.name, "data-status": call.status,
  },
  h("span", { class: "speaker" }, "Tool"),
  h("span", { class: "tool-name" }, call.name),
  h("span", { class: "tool-status" }, call.status),
  call.latency_ms !== null && call.latency_ms !== undefined
    ? h("span", { class: "tool-latency" }, `${call.latency_ms} ms`) : null,
  h("details", {}, h("summary", {}, "Arguments"), h("pre", {}, json(call.arguments))));
  if (call.error) item.append(h("p", { class: "tool-error" }, call.error));
  else if (call.result !== null && call.result !== undefined) {
    item.append(h("pre", { class: "tool-result" }, json(call.result)));
  }
  return item;
}
