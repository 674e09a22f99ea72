// Calls (`#/calls`): recent call logs (`GET /api/v1/call-logs`), each linking to its detail.
// Call detail (`#/calls/<id>`): `GET /api/v1/call-logs/{id}` (the call, its timeline in
// `events`, its status history in `status_events`), and the call's voice sessions
// (`GET /api/v1/voice-sessions?call_id=…`, then `GET /api/v1/voice-sessions/{id}`:
// transcript, function calls, handoffs, evaluation).

import { api, aborted, query } from "./api.js";
import {
  duration, emptyRow, facts, h, phone, ready, say, section, startPage, when,
} from "./dom.js";
import { toolItem, turnItem } from "./live.js";

const PAGE_SIZE = 50;

export function mountList(main, signal) {
  startPage(main, "calls");
  let offset = 0;
  let unmasked = false;
  const body = h("tbody");
  const tableNode = h("table", { id: "calls-table", class: "grid" },
    h("caption", { class: "sr-only" }, "Recent calls, newest first"),
    h("thead", {}, h("tr", {}, ["Started", "Direction", "From", "To", "Status", "Outcome", "Duration", "Agent", "Detail"]
      .map((t) => h("th", { scope: "col" }, t)))),
    body);
  const message = h("p", { id: "calls-message", role: "status", class: "message" });
  const unmask = h("input", { id: "calls-unmask", type: "checkbox" });
  const prev = h("button", { id: "calls-page-prev", type: "button", "aria-label": "Newer calls" }, "‹ Newer");
  const next = h("button", { id: "calls-page-next", type: "button", "aria-label": "Older calls" }, "Older ›");
  const info = h("span", { "aria-live": "polite" });
  const refresh = h("button", { id: "calls-refresh", type: "button" }, "Refresh");
  main.append(
    h("header", { class: "page-head" }, h("h1", {}, "Calls"),
      h("label", { class: "toggle" }, unmask, " Show numbers"), refresh),
    message,
    h("div", { class: "table-wrap" }, tableNode),
    h("div", { class: "pager" }, prev, info, next));
  let last = null;

  const draw = () => {
    if (!last) return;
    body.replaceChildren();
    if (last.data.length === 0) body.append(emptyRow(9, "No calls yet."));
    for (const call of last.data) {
      const href = `#/calls/${encodeURIComponent(call.id)}`;
      const row = h("tr", { "data-call-id": call.id, "data-status": call.status, class: "link-row" },
        h("td", { "data-col": "started" }, when(call.started_at || call.created_at)),
        h("td", { "data-col": "direction" }, call.direction),
        h("td", { "data-col": "from" }, phone(call.from, unmasked)),
        h("td", { "data-col": "to" }, phone(call.to, unmasked)),
        h("td", { "data-col": "status" }, call.status),
        h("td", { "data-col": "outcome" }, call.outcome || call.end_reason || "—"),
        h("td", { "data-col": "duration" }, duration(call.duration_seconds)),
        h("td", { "data-col": "agent" }, call.agent_key || "—"),
        h("td", {}, h("a", { href, "aria-label": `Open call ${call.id}` }, "Open")));
      row.addEventListener("click", (e) => {
        if (!e.target.closest("a")) location.hash = href;
      });
      body.append(row);
    }
    info.textContent = last.total === 0 ? "" : `${offset + 1}–${offset + last.data.length} of ${last.total}`;
    prev.disabled = offset === 0;
    next.disabled = offset + last.data.length >= last.total;
  };

  const load = async () => {
    ready(main, false);
    try {
      last = await api(`/api/v1/call-logs${query({ limit: PAGE_SIZE, offset })}`, { signal });
      say(message, "");
      draw();
    } catch (e) {
      if (aborted(e)) return;
      say(message, `Calls: ${e.describe ? e.describe() : e.message}`, "error");
    }
    ready(main);
  };
  unmask.addEventListener("change", () => {
    unmasked = unmask.checked;
    draw();
  });
  prev.addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE_SIZE);
    load();
  });
  next.addEventListener("click", () => {
    offset += PAGE_SIZE;
    load();
  });
  refresh.addEventListener("click", load);
  load();
}

/** Carrier statuses after which a call changes no more. */
const FINAL = new Set(["completed", "failed", "busy", "no-answer", "canceled"]);
/** How long after its end a call's page keeps looking for its evaluation. */
const EVALUATION_WAIT_MS = 120000;
const REFRESH_MS = 3000;

export async function mountDetail(main, signal, [rawId]) {
  startPage(main, "call");
  const id = decodeURIComponent(rawId);
  const message = h("p", { id: "detail-message", role: "status", class: "message" });
  const content = h("div", { id: "detail-content" });
  main.append(
    h("header", { class: "page-head" },
      h("h1", {}, "Call ", h("span", { class: "mono" }, id)),
      h("a", { href: "#/calls", class: "back" }, "All calls")),
    message, content);
  // While the call runs, and for a while after it ended without its evaluation, the page
  // reads it again every few seconds and swaps the sections in whole.
  let unmasked = false;
  for (;;) {
    const result = await loadDetail(id, signal);
    if (signal.aborted) return;
    if (result.error) {
      say(message, `Call: ${result.error}`, "error");
      ready(main);
      return;
    }
    const { call, sessions, sessionError } = result;
    content.replaceChildren(...detailSections(call, sessions, sessionError, unmasked, (v) => {
      unmasked = v;
    }));
    ready(main);
    const ended = Date.parse(call.completed_at || call.ended_at || "");
    const evaluated = sessions.length > 0 && sessions.every((s) => s.evaluation);
    const waiting = !FINAL.has(call.status)
      || (!evaluated && !sessionError && !Number.isNaN(ended) && Date.now() - ended < EVALUATION_WAIT_MS);
    if (!waiting) return;
    say(message, FINAL.has(call.status) ? "Waiting for the evaluation…" : "The call is in progress: refreshing…");
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, REFRESH_MS);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
    if (signal.aborted) return;
    say(message, "");
  }
}

/** The call and its sessions (`error`: the call itself could not be read). */
async function loadDetail(id, signal) {
  let call;
  try {
    call = await api(`/api/v1/call-logs/${encodeURIComponent(id)}`, { signal });
  } catch (e) {
    if (aborted(e)) return {};
    return { error: e.describe ? e.describe() : e.message };
  }
  try {
    return { call, sessions: await sessionsOf(call, signal), sessionError: null };
  } catch (e) {
    if (aborted(e)) return {};
    return { call, sessions: [], sessionError: e.describe ? e.describe() : e.message };
  }
}

function detailSections(call, sessions, sessionError, unmasked, onUnmask) {
  const summary = summaryOf(call, sessions, unmasked, onUnmask);
  const transcript = section("detail-transcript", "Transcript");
  const functions = section("detail-function-calls", "Function calls");
  const handoff = section("detail-handoff", "Handoff");
  const evaluation = section("detail-evaluation", "Evaluation");
  if (sessionError) {
    for (const s of [transcript, functions, handoff, evaluation]) {
      s.append(h("p", { class: "na", role: "alert" }, `Not available: ${sessionError}`));
    }
  } else {
    fillTranscript(transcript, sessions);
    fillFunctions(functions, sessions);
    fillHandoff(handoff, sessions);
    fillEvaluation(evaluation, sessions);
  }
  return [summary,
    h("div", { class: "columns" },
      h("div", {}, transcript, functions, handoff),
      h("div", {}, evaluation, eventsOf(call), statusOf(call)))];
}

/**
 * The voice sessions of a call (one per media stream): `GET /api/v1/voice-sessions?call_id=`;
 * on a server without that filter (400 naming `call_id`), found by the stream ids and
 * session ids of the call's timeline.
 */
async function sessionsOf(call, signal) {
  let ids = null;
  try {
    const page = await api(`/api/v1/voice-sessions${query({ call_id: call.id, limit: 50 })}`, { signal });
    ids = (page.data || []).map((s) => s.id);
  } catch (e) {
    if (aborted(e) || !(e.status === 400 && e.field === "call_id")) throw e;
  }
  if (ids === null) ids = await sessionIdsFromTimeline(call, signal);
  const sessions = await Promise.all(ids.map((sid) => api(`/api/v1/voice-sessions/${encodeURIComponent(sid)}`, { signal })));
  return sessions
    .filter((s) => s.call_id === call.id)
    .sort((a, b) => (a.started_at < b.started_at ? -1 : 1));
}

async function sessionIdsFromTimeline(call, signal) {
  const streamIds = [];
  const sessionIds = [];
  for (const event of call.events || []) {
    const d = event.detail || {};
    if (d.stream_sid && !streamIds.includes(d.stream_sid)) streamIds.push(d.stream_sid);
    if (d.session_id && !sessionIds.includes(d.session_id)) sessionIds.push(d.session_id);
  }
  for (const streamId of streamIds) {
    const page = await api(`/api/v1/voice-sessions${query({ stream_id: streamId, limit: 10 })}`, { signal });
    for (const s of page.data || []) {
      if (s.call_id === call.id && !sessionIds.includes(s.id)) sessionIds.push(s.id);
    }
  }
  return sessionIds;
}

function summaryOf(call, sessions, unmasked, onUnmask) {
  const numbers = {
    from: h("span", {}, phone(call.from, unmasked)),
    to: h("span", {}, phone(call.to, unmasked)),
  };
  const unmask = h("input", { id: "detail-unmask", type: "checkbox", checked: unmasked });
  unmask.addEventListener("change", () => {
    onUnmask(unmask.checked);
    numbers.from.textContent = phone(call.from, unmask.checked);
    numbers.to.textContent = phone(call.to, unmask.checked);
  });
  const versions = [...new Set(sessions.map((s) => s.agent_version_id).filter(Boolean))];
  const version = versions.length ? versions.join(", ") : call.agent_version_id;
  return h("section", { id: "detail-summary", class: "panel", "aria-labelledby": "detail-summary-title" },
    h("h2", { id: "detail-summary-title" }, "Summary"),
    facts([
      ["Status", call.status],
      ["Direction", call.direction],
      ["From", numbers.from],
      ["To", numbers.to],
      ["Duration", duration(call.duration_seconds)],
      ["Agent", `${call.agent_key || "—"}${version ? ` · ${version}` : ""}`],
      ["End reason", [call.end_reason, call.end_detail].filter(Boolean).join(": ") || "—"],
      ["Outcome", call.outcome || "—"],
      ["Started", when(call.started_at || call.created_at)],
      ["Ended", when(call.ended_at)],
    ]),
    h("label", { class: "toggle" }, unmask, " Show numbers"));
}

function fillTranscript(node, sessions) {
  const turns = sessions.flatMap((s) => s.transcript || []);
  if (turns.length === 0) {
    node.append(h("p", { class: "na" }, sessions.length ? "No transcript turns." : "No voice session for this call."));
    return;
  }
  node.append(h("ol", { class: "turns" }, turns.map((t) => turnItem(t))));
}

function fillFunctions(node, sessions) {
  const calls = sessions.flatMap((s) => s.function_calls || []);
  if (calls.length === 0) {
    node.append(h("p", { class: "na" }, "No function calls."));
    return;
  }
  node.append(h("ol", { class: "turns" }, calls.map((c) => {
    const item = toolItem(c);
    item.classList.remove("tool-call");
    item.classList.add("function-call");
    item.append(h("p", { class: "hint" }, `${c.kind || ""} · ${when(c.started_at)}`));
    return item;
  })));
}

function fillHandoff(node, sessions) {
  const handoffs = sessions.flatMap((s) => s.handoffs || []);
  if (handoffs.length === 0) {
    node.append(h("p", { class: "na" }, "No handoff."));
    return;
  }
  for (const ho of handoffs) {
    const ctx = ho.context || {};
    node.append(h("article", { class: "handoff", "data-handoff-id": ho.id },
      facts([
        ["Queue", ho.queue],
        ["Reason", ho.reason],
        ["Rule", ho.rule],
        ["Status", `${ho.status}${ho.dial_status ? ` (${ho.dial_status})` : ""}`],
        ["Outcome", ho.outcome || "—"],
        ["Callback task", ho.callback_task_id || "—"],
        ["Identity", ctx.identity ? (ctx.identity.verified ? "verified" : "not verified") : "—"],
      ]),
      ctx.summary ? h("details", { open: true }, h("summary", {}, "Context given to the person"),
        h("pre", {}, ctx.summary)) : null));
  }
}

function fillEvaluation(node, sessions) {
  const evaluations = sessions.map((s) => s.evaluation).filter(Boolean);
  if (evaluations.length === 0) {
    node.append(h("p", { class: "na" }, "Not evaluated yet (the evaluation runs when the call ends)."));
    return;
  }
  for (const ev of evaluations) {
    const verdict = ev.passed ? "passed" : "failed";
    node.append(h("article", { class: "evaluation", "data-evaluation-id": ev.id, "data-verdict": verdict },
      h("p", { class: `verdict ${verdict}` },
        h("strong", {}, ev.passed ? "Passed" : "Failed"),
        ` · score ${fmt(ev.score)} (pass ≥ ${fmt(ev.pass_score)})`),
      ev.judge_error ? h("p", { class: "tool-error" }, `Judge error: ${ev.judge_error}`) : null,
      h("ul", { class: "criteria" }, (ev.criteria || []).map(criterionItem))));
  }
}

function criterionItem(c) {
  const e = c.evidence || {};
  const measured = e.measured !== null && e.measured !== undefined
    ? `measured ${e.measured}${e.unit ? ` ${e.unit}` : ""}${e.threshold !== null && e.threshold !== undefined ? ` (threshold ${e.threshold})` : ""}`
    : null;
  return h("li", { class: "criterion", "data-criterion": c.key, "data-verdict": c.verdict },
    h("p", {}, h("strong", {}, c.key), ` · ${c.kind} · `,
      h("span", { class: `badge ${c.verdict}` }, c.verdict),
      c.critical ? h("span", { class: "badge" }, "critical") : null),
    h("div", { class: "evidence" },
      e.note ? h("p", {}, e.note) : null,
      measured ? h("p", {}, measured) : null,
      (e.turns || []).length
        ? h("ul", { class: "quotes" }, e.turns.map((t) => h("li", {},
          h("span", { class: "speaker" }, `Turn ${t.turn} · ${t.speaker}`), h("q", {}, t.quote))))
        : null));
}

function eventsOf(call) {
  const node = section("detail-events", "Call events");
  const events = call.events || [];
  if (events.length === 0) node.append(h("p", { class: "na" }, "No events."));
  else {
    node.append(h("ol", { class: "timeline" }, events.map((e) => h("li", { "data-kind": e.kind },
      h("time", { datetime: e.at }, when(e.at)), " ",
      h("strong", {}, e.kind), " ",
      h("span", { class: "detail" }, brief(e.detail))))));
  }
  return node;
}

function statusOf(call) {
  const node = section("detail-status", "Status history");
  const events = call.status_events || [];
  if (events.length === 0) node.append(h("p", { class: "na" }, "No carrier status callbacks."));
  else {
    node.append(h("ol", { class: "timeline" }, events.map((e) => h("li", { "data-status": e.status },
      h("time", { datetime: e.at }, when(e.at)), " ", h("strong", {}, e.status)))));
  }
  return node;
}

/** An event's detail in one line (`key=value`, nested values as JSON). */
function brief(detail) {
  if (!detail || typeof detail !== "object") return detail ? String(detail) : "";
  return Object.entries(detail)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(" ");
}

function fmt(n) {
  return n === null || n === undefined ? "—" : Number(n).toFixed(2);
}


