// Callback work (`#/callbacks`): the tenant's callback tasks (`GET /api/v1/callback-tasks`,
// filtered by status and queue), claimed, completed with an outcome or cancelled with a
// reason (`POST /api/v1/callback-tasks/{id}/claim|complete|cancel`). A claim is exclusive:
// the loser gets 409 `invalid_transition`, reads the task again and is told who has it.
// The list is read again every 5 seconds: new tasks appear and changed ones are redrawn.

import { api, aborted, query, session } from "./api.js";
import { emptyRow, h, phone, ready, say, setText, startPage, when } from "./dom.js";

const STATUSES = ["all", "open", "claimed", "completed", "cancelled"];
/** How often the list is read again for new and changed tasks. */
const POLL_MS = 5000;
const COLUMNS = ["created", "phone", "reason", "queue", "priority", "status", "claimed-by", "result"];
const ACTIONS = {
  claim: ["open"],
  complete: ["claimed"],
  cancel: ["open", "claimed"],
};

export function mount(main, signal) {
  startPage(main, "callbacks");
  const status = h("select", { id: "callbacks-status" },
    STATUSES.map((s) => h("option", { value: s }, s)));
  const queue = h("select", { id: "callbacks-queue" }, h("option", { value: "" }, "All queues"));
  const refresh = h("button", { id: "callbacks-refresh", type: "button" }, "Refresh");
  const unmask = h("input", { id: "callbacks-unmask", type: "checkbox" });
  const message = h("p", { id: "callbacks-message", role: "status", class: "message" });
  const body = h("tbody");
  const tableNode = h("table", { id: "callbacks-table", class: "grid" },
    h("caption", { class: "sr-only" }, "Callback tasks"),
    h("thead", {}, h("tr", {}, ["Created", "Phone", "Reason", "Queue", "Priority", "Status", "Claimed by", "Outcome / reason", "Actions"]
      .map((t) => h("th", { scope: "col" }, t)))),
    body);
  main.append(
    h("header", { class: "page-head" }, h("h1", {}, "Callback tasks")),
    h("div", { class: "filters", role: "group", "aria-label": "Filters" },
      h("label", { for: "callbacks-status" }, "Status"), status,
      h("label", { for: "callbacks-queue" }, "Queue"), queue,
      refresh,
      h("label", { class: "toggle" }, unmask, " Show numbers")),
    message,
    h("div", { class: "table-wrap" }, tableNode));

  const queues = new Map();
  const rows = new Map();
  const tasks = new Map();
  const operator = (session() || {}).operator || "";
  const tell = (text, kind) => say(message, text, kind);

  /** Whether `action` is offered on `task` (the API still decides: a lost race is a 409). */
  const offered = (action, task) => {
    if (action === "claim") {
      // A task someone else claimed keeps its claim button: pressing it says who has it.
      return task.status === "open" || (task.status === "claimed" && task.assignee !== operator);
    }
    return ACTIONS[action].includes(task.status);
  };

  /** A task's row, built once; `fill` puts a task's state in it in place. */
  const rowOf = (task) => {
    const cells = {};
    const row = h("tr", { "data-task-id": task.id });
    for (const col of COLUMNS) {
      cells[col] = h("td", { "data-col": col });
      row.append(cells[col]);
    }
    const buttons = {};
    for (const action of Object.keys(ACTIONS)) {
      buttons[action] = h("button", {
        type: "button", "data-action": action,
        "aria-label": `${action[0].toUpperCase()}${action.slice(1)} task ${task.id}`,
        class: action === "cancel" ? "danger" : null,
      }, action[0].toUpperCase() + action.slice(1));
      buttons[action].addEventListener("click", () => act(action, task.id));
    }
    row.append(h("td", { class: "actions" }, Object.values(buttons)));
    row.cells_ = cells;
    row.buttons_ = buttons;
    return row;
  };

  const fill = (row, task) => {
    const c = row.cells_;
    const q = task.queue_id ? queues.get(task.queue_id) : null;
    row.dataset.status = task.status;
    if (task.source_call_id) row.dataset.sourceCallId = task.source_call_id;
    setText(c.created, when(task.created_at));
    setText(c.phone, phone(task.phone, unmask.checked));
    setText(c.reason, task.reason || "—");
    setText(c.queue, q ? q.name : task.queue_id || "—");
    setText(c.priority, task.priority);
    setText(c.status, task.status);
    setText(c["claimed-by"], task.assignee || "—");
    setText(c.result, task.status === "completed" ? task.outcome || "—"
      : task.status === "cancelled" ? task.cancel_reason || "—" : "");
    for (const [action, button] of Object.entries(row.buttons_)) {
      button.disabled = !offered(action, task);
    }
  };

  /** Puts the task's current state in its row, in place (or adds the row at the end). */
  const put = (task) => {
    tasks.set(task.id, task);
    let row = rows.get(task.id);
    if (!row) {
      row = rowOf(task);
      rows.set(task.id, row);
      body.append(row);
    }
    fill(row, task);
    return row;
  };

  const load = async () => {
    ready(main, false);
    try {
      const params = { limit: 100 };
      if (status.value !== "all") params.status = status.value;
      if (queue.value) params.queue_id = queue.value;
      const page = await api(`/api/v1/callback-tasks${query(params)}`, { signal });
      rows.clear();
      tasks.clear();
      body.replaceChildren();
      if (page.data.length === 0) body.append(emptyRow(9, "No callback tasks."));
      for (const task of page.data) put(task);
      if (page.total > page.data.length) {
        tell(`Showing ${page.data.length} of ${page.total} tasks: narrow the filters to see the others.`);
      }
    } catch (e) {
      if (aborted(e)) return;
      tell(`Callback tasks: ${e.describe ? e.describe() : e.message}`, "error");
    }
    ready(main);
  };

  /** Every few seconds: new tasks added in their place, changed ones redrawn (none removed). */
  const poll = async () => {
    if (document.querySelector("dialog[open]") || main.dataset.ready !== "true") return;
    try {
      const params = { limit: 100 };
      if (status.value !== "all") params.status = status.value;
      if (queue.value) params.queue_id = queue.value;
      const page = await api(`/api/v1/callback-tasks${query(params)}`, { signal });
      let next = null;
      for (const task of [...page.data].reverse()) {
        const known = rows.has(task.id) ? tasks.get(task.id) : null;
        if (!known) {
          tasks.set(task.id, task);
          const row = rowOf(task);
          fill(row, task);
          rows.set(task.id, row);
          body.insertBefore(row, next);
        } else if (known.updated_at !== task.updated_at) {
          put(task);
        }
        next = rows.get(task.id);
      }
      if (rows.size > 0) body.querySelector("tr.empty")?.remove();
    } catch (e) {
      if (!aborted(e)) tell(`Callback tasks: ${e.describe ? e.describe() : e.message}`, "error");
    }
  };
  const poller = setInterval(poll, POLL_MS);
  signal.addEventListener("abort", () => clearInterval(poller), { once: true });

  const refreshTask = async (id) => {
    const task = await api(`/api/v1/callback-tasks/${encodeURIComponent(id)}`, { signal });
    put(task);
    return task;
  };

  const act = async (action, id) => {
    try {
      if (action === "claim") {
        try {
          const task = await api(`/api/v1/callback-tasks/${encodeURIComponent(id)}/claim`, {
            method: "POST", body: { assignee: operator }, signal,
          });
          put(task);
          tell(`You (${operator}) claimed task ${id}.`);
        } catch (e) {
          if (e.status !== 409) throw e;
          const task = await refreshTask(id);
          const who = task.assignee ? `${task.assignee} has it` : `it is ${task.status}`;
          tell(`Task ${id} was not claimed: ${who}.`, "error");
        }
      } else if (action === "complete") {
        const result = await completeDialog();
        if (!result) return;
        const task = await api(`/api/v1/callback-tasks/${encodeURIComponent(id)}/complete`, {
          method: "POST", body: result, signal,
        });
        put(task);
        tell(`Task ${id} completed${task.outcome ? `: ${task.outcome}` : ""}.`);
      } else if (action === "cancel") {
        const reason = await cancelDialog();
        if (reason === null) return;
        const task = await api(`/api/v1/callback-tasks/${encodeURIComponent(id)}/cancel`, {
          method: "POST", body: reason ? { reason } : {}, signal,
        });
        put(task);
        tell(`Task ${id} cancelled.`);
      }
    } catch (e) {
      if (aborted(e)) return;
      tell(`Could not ${action} task ${id}: ${e.describe ? e.describe() : e.message}`, "error");
      if (e.status === 409 || e.status === 404) {
        refreshTask(id).catch(() => {});
      }
    }
  };

  unmask.addEventListener("change", () => {
    for (const [id, row] of rows) fill(row, tasks.get(id));
  });
  status.addEventListener("change", load);
  queue.addEventListener("change", load);
  refresh.addEventListener("click", load);

  (async () => {
    try {
      const page = await api(`/api/v1/operator-queues${query({ limit: 100 })}`, { signal });
      for (const q of page.data || []) {
        queues.set(q.id, q);
        queue.append(h("option", { value: q.id }, q.name));
      }
    } catch (e) {
      if (aborted(e)) return;
      tell(`Queues: ${e.describe ? e.describe() : e.message}`, "error");
    }
    await load();
  })();
}

/** A modal dialog built once and kept in the body (`dialog#<id>`). */
function dialogOf(id, title, fields, submitId, submitLabel) {
  let dialog = document.getElementById(id);
  if (dialog) return dialog;
  dialog = h("dialog", { id, "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, title),
    fields,
    h("p", { class: "message", role: "alert", "data-kind": "error", id: `${id}-error` }),
    h("div", { class: "dialog-actions" },
      h("button", { type: "button", id: `${id}-close` }, "Back"),
      h("button", { type: "button", id: submitId, class: "primary" }, submitLabel)));
  document.body.append(dialog);
  return dialog;
}

/** Runs a dialog: resolves `collect()`'s value on submit (when it is not undefined), null on close. */
function runDialog(dialog, submitId, collect, first) {
  const submit = document.getElementById(submitId);
  const close = document.getElementById(`${dialog.id}-close`);
  const error = document.getElementById(`${dialog.id}-error`);
  error.textContent = "";
  return new Promise((resolve) => {
    const done = (value) => {
      submit.removeEventListener("click", onSubmit);
      close.removeEventListener("click", onClose);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onSubmit = () => {
      const value = collect(error);
      if (value !== undefined) done(value);
    };
    const onClose = () => done(null);
    const onCancel = (e) => {
      e.preventDefault();
      done(null);
    };
    submit.addEventListener("click", onSubmit);
    close.addEventListener("click", onClose);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    first.focus();
  });
}

function completeDialog() {
  const dialog = dialogOf("complete-dialog", "Complete the callback task", [
    h("label", { for: "complete-outcome" }, "Outcome"),
    h("input", { id: "complete-outcome", type: "text", maxlength: "500", placeholder: "e.g. refund issued" }),
    h("label", { for: "complete-notes" }, "Notes (optional)"),
    h("textarea", { id: "complete-notes", rows: "3", maxlength: "2000" }),
  ], "complete-submit", "Complete");
  const outcome = document.getElementById("complete-outcome");
  const notes = document.getElementById("complete-notes");
  outcome.value = "";
  notes.value = "";
  return runDialog(dialog, "complete-submit", (error) => {
    const o = outcome.value.trim();
    if (!o) {
      error.textContent = "Enter the outcome of the callback.";
      return undefined;
    }
    const body = { outcome: o };
    if (notes.value.trim()) body.notes = notes.value.trim();
    return body;
  }, outcome);
}

function cancelDialog() {
  const dialog = dialogOf("cancel-dialog", "Cancel the callback task", [
    h("label", { for: "cancel-reason" }, "Reason"),
    h("textarea", { id: "cancel-reason", rows: "3", maxlength: "500" }),
  ], "cancel-submit", "Cancel task");
  const reason = document.getElementById("cancel-reason");
  reason.value = "";
  return runDialog(dialog, "cancel-submit", (error) => {
    const r = reason.value.trim();
    if (!r) {
      error.textContent = "Say why the task is cancelled.";
      return undefined;
    }
    return r;
  }, reason);
}
