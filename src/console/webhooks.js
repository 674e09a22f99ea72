// Webhook deliveries (`#/webhooks`): the tenant's event deliveries
// (`GET /api/v1/webhook-deliveries`), each with a redeliver action
// (`POST /api/v1/webhook-deliveries/{id}/redeliver`).

import { api, aborted, query } from "./api.js";
import { emptyRow, h, ready, say, startPage, when } from "./dom.js";

const STATUSES = ["all", "pending", "delivering", "delivered", "failed"];

export function mount(main, signal) {
  startPage(main, "webhooks");
  const status = h("select", { id: "deliveries-status" },
    STATUSES.map((s) => h("option", { value: s }, s)));
  const refresh = h("button", { id: "deliveries-refresh", type: "button" }, "Refresh");
  const message = h("p", { id: "deliveries-message", role: "status", class: "message" });
  const body = h("tbody");
  const tableNode = h("table", { id: "deliveries-table", class: "grid" },
    h("caption", { class: "sr-only" }, "Webhook deliveries, newest first"),
    h("thead", {}, h("tr", {}, ["Created", "Event", "Status", "Attempts", "Last answer", "Delivered", "Actions"]
      .map((t) => h("th", { scope: "col" }, t)))),
    body);
  main.append(
    h("header", { class: "page-head" }, h("h1", {}, "Webhook deliveries")),
    h("div", { class: "filters", role: "group", "aria-label": "Filters" },
      h("label", { for: "deliveries-status" }, "Status"), status, refresh),
    message,
    h("div", { class: "table-wrap" }, tableNode));

  const rows = new Map();
  const rowOf = (d) => {
    const redeliver = h("button", {
      type: "button", "data-action": "redeliver", "aria-label": `Redeliver ${d.event} (${d.id})`,
    }, "Redeliver");
    redeliver.addEventListener("click", async () => {
      redeliver.disabled = true;
      try {
        const updated = await api(`/api/v1/webhook-deliveries/${encodeURIComponent(d.id)}/redeliver`, {
          method: "POST", signal,
        });
        if (updated && updated.id) put(updated);
        say(message, `Delivery ${d.id} queued again.`);
      } catch (e) {
        if (aborted(e)) return;
        say(message, `Could not redeliver ${d.id}: ${e.describe ? e.describe() : e.message}`, "error");
        redeliver.disabled = false;
      }
    });
    const answer = d.last_error
      ? `${d.last_status_code ?? ""} ${d.last_error}`.trim()
      : d.last_status_code ?? "—";
    return h("tr", { "data-delivery-id": d.id, "data-status": d.status },
      h("td", { "data-col": "created" }, when(d.created_at)),
      h("td", { "data-col": "event" }, d.event),
      h("td", { "data-col": "status" }, d.status),
      h("td", { "data-col": "attempts" }, String(d.attempts)),
      h("td", { "data-col": "last-answer" }, String(answer)),
      h("td", { "data-col": "delivered" }, when(d.delivered_at)),
      h("td", { class: "actions" }, redeliver));
  };
  const put = (d) => {
    const row = rowOf(d);
    const old = rows.get(d.id);
    if (old) old.replaceWith(row);
    else body.append(row);
    rows.set(d.id, row);
  };
  const load = async () => {
    ready(main, false);
    try {
      const params = { limit: 100 };
      if (status.value !== "all") params.status = status.value;
      const page = await api(`/api/v1/webhook-deliveries${query(params)}`, { signal });
      rows.clear();
      body.replaceChildren();
      if (page.data.length === 0) body.append(emptyRow(7, "No deliveries."));
      for (const d of page.data) put(d);
    } catch (e) {
      if (aborted(e)) return;
      say(message, `Deliveries: ${e.describe ? e.describe() : e.message}`, "error");
    }
    ready(main);
  };
  status.addEventListener("change", load);
  refresh.addEventListener("click", load);
  load();
}
