// Admin pages (admin key): readiness review (`GET /api/v1/admin/tenants/{id}/readiness`),
// rollout governance (`GET /api/v1/admin/rollout-governance?tenant_id=`) and evaluation
// pass rate per version over time (`GET /api/v1/admin/agents`, `…/agents/{id}/versions`,
// `…/agent-versions/{id}/evaluation-summary`, and the per-bucket series). Each page picks
// the tenant in `select#admin-tenant` (remembered for the tab).

import { api, aborted, query, session } from "./api.js";
import { emptyRow, facts, h, json, percent, ready, say, startPage, when } from "./dom.js";
import { legend, passRateChart, splitBar } from "./chart.js";

const PICKED = "ssv.adminTenant";

/** The page frame: heading, tenant picker, message line; calls `show(tenantId, body)` on each pick. */
async function withTenant(main, signal, name, title, show) {
  startPage(main, name);
  const picker = h("select", { id: "admin-tenant" });
  const message = h("p", { id: "admin-message", role: "status", class: "message" });
  const body = h("div", { id: "admin-body" });
  main.append(
    h("header", { class: "page-head" }, h("h1", {}, title),
      h("div", { class: "filters" }, h("label", { for: "admin-tenant" }, "Tenant"), picker)),
    message, body);
  let tenants;
  try {
    const page = await api(`/api/v1/admin/tenants${query({ limit: 200 })}`, { as: "admin", signal });
    tenants = page.data || [];
  } catch (e) {
    if (aborted(e)) return;
    say(message, `Tenants: ${e.describe ? e.describe() : e.message}`, "error");
    ready(main);
    return;
  }
  if (tenants.length === 0) {
    say(message, "No tenants yet.");
    ready(main);
    return;
  }
  for (const t of tenants) picker.append(h("option", { value: t.id }, `${t.name} (${t.id})`));
  const s = session() || {};
  const remembered = sessionStorage.getItem(PICKED);
  const initial = [remembered, s.tenantId].find((id) => id && tenants.some((t) => t.id === id));
  picker.value = initial || tenants[0].id;
  const load = async () => {
    sessionStorage.setItem(PICKED, picker.value);
    ready(main, false);
    say(message, "");
    body.replaceChildren();
    try {
      await show(picker.value, body, signal);
    } catch (e) {
      if (aborted(e)) return;
      say(message, `${title}: ${e.describe ? e.describe() : e.message}`, "error");
    }
    if (!signal.aborted) ready(main);
  };
  picker.addEventListener("change", load);
  await load();
}

// === readiness ===

export function mountReadiness(main, signal) {
  withTenant(main, signal, "readiness", "Readiness review", async (tenantId, body) => {
    const r = await api(`/api/v1/admin/tenants/${encodeURIComponent(tenantId)}/readiness`, { as: "admin", signal });
    body.append(
      h("p", { id: "readiness-verdict", class: `verdict ${r.ready ? "passed" : "failed"}`, "data-ready": String(r.ready) },
        h("strong", {}, r.ready ? "Ready for launch" : "Not ready"),
        r.ready ? "" : ` · failing: ${(r.failing || []).join(", ")}`),
      h("ul", { class: "gates" }, (r.gates || []).map((g) => h("li", {
        class: "gate", "data-gate": g.key, "data-status": g.status,
      },
      h("p", { class: "gate-head" },
        h("span", { class: `badge ${g.status}` }, g.status),
        h("strong", {}, g.key),
        h("span", { class: "owner" }, `owner: ${g.owner}`)),
      h("p", { class: "reason" }, g.reason),
      h("p", { class: "hint" }, `checked ${when(g.checked_at)}`),
      g.evidence ? h("details", {}, h("summary", {}, "Evidence"), h("pre", {}, json(g.evidence))) : null))));
  });
}

// === rollouts ===

export function mountRollouts(main, signal) {
  withTenant(main, signal, "rollouts", "Rollout governance", async (tenantId, body) => {
    const r = await api(`/api/v1/admin/rollout-governance${query({ tenant_id: tenantId })}`, { as: "admin", signal });
    const agents = r.data || [];
    if (agents.length === 0) {
      body.append(h("p", { class: "na" }, "This tenant has no agents."));
      return;
    }
    // Version numbers for the ids the governance view names (one request per agent).
    const lists = await Promise.all(agents.map((a) => api(
      `/api/v1/admin/agents/${encodeURIComponent(a.agent_id)}/versions`, { as: "admin", signal },
    ).catch((e) => {
      if (aborted(e)) throw e;
      return { data: [] };
    })));
    const names = new Map(lists.flatMap((l) => (l.data || []).map((v) => [v.id, `v${v.version}`])));
    const label = (id) => (id ? (names.has(id) ? `${names.get(id)} (${id})` : id) : "—");
    for (const a of agents) body.append(rolloutOf(a, label));
  });
}

function rolloutOf(a, label) {
  const p = a.policy;
  const split = h("div", { class: "split-wrap" },
    splitBar(a.split.stable, a.split.canary),
    h("p", { class: "hint" }, `${a.split.stable} % of new calls on stable, ${a.split.canary} % on the canary`));
  const thresholds = p ? p.guardrails : null;
  return h("article", { class: "rollout panel", "data-agent": a.agent_key, "data-state": a.state },
    h("h2", {}, a.agent_key, " ", h("span", { class: `badge ${a.state}` }, a.state)),
    facts([
      ["Stage", p ? `${a.stage + 1} of ${(p.stages || []).length || 1}` : "—"],
      ["Stable version", p ? label(p.stable_version_id) : "newest approved"],
      ["Canary version", p && p.canary_version_id ? label(p.canary_version_id) : "—"],
      ["Canary since", p ? when(p.canary_started_at) : "—"],
      ["Live calls", (a.live_calls || []).map((l) => `${label(l.agent_version_id)}: ${l.calls}`).join(", ") || "none"],
      ["Auto-promote", p ? (p.auto_promote ? "yes" : "no") : "—"],
    ]),
    split,
    h("h3", {}, "Guardrails"),
    (a.guardrails || []).length === 0
      ? h("p", { class: "na" }, thresholds
        ? `No canary running. Thresholds: pass-rate Δ ${thresholds.pass_rate_delta}, transfer-rate Δ ${thresholds.transfer_rate_delta}, `
          + `error rate ≤ ${thresholds.max_error_rate}, first-audio p95 ≤ ${thresholds.max_first_audio_p95_ms} ms, min sample ${thresholds.min_sample}.`
        : "No policy: every call runs the newest approved version.")
      : guardrailTable(a.guardrails),
    h("h3", {}, "Decisions"),
    (a.decisions || []).length === 0
      ? h("p", { class: "na" }, "No decisions yet.")
      : h("ol", { class: "timeline decisions" }, a.decisions.map((d) => h("li", { class: "decision", "data-action": d.action },
        h("time", { datetime: d.created_at }, when(d.created_at)), " ",
        h("strong", {}, d.action), ` by ${d.actor}: ${d.from_state} → ${d.to_state}, canary ${d.canary_percent} % · `,
        d.reason))));
}

function guardrailTable(checks) {
  const num = (v) => (v === null || v === undefined ? "—" : Number.isInteger(v) ? String(v) : Number(v).toFixed(3));
  return h("table", { class: "grid guardrails" },
    h("caption", { class: "sr-only" }, "Guardrails against their thresholds"),
    h("thead", {}, h("tr", {}, ["Guardrail", "Canary", "Stable", "Threshold", "Bound", "Samples", "Status"]
      .map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, checks.map((c) => h("tr", { class: "guardrail", "data-guardrail": c.guardrail, "data-status": c.status },
      h("td", {}, c.guardrail), h("td", {}, num(c.value)), h("td", {}, num(c.baseline)),
      h("td", {}, num(c.threshold)), h("td", {}, num(c.bound)),
      h("td", {}, `${c.canary_sample}${c.stable_sample !== null && c.stable_sample !== undefined ? ` / ${c.stable_sample}` : ""} (min ${c.min_sample})`),
      h("td", {}, h("span", { class: `badge ${c.status}` }, c.status))))));
}

// === evaluations ===

const BUCKETS = {
  hour: { ms: 3600000, count: 24, label: "hour" },
  day: { ms: 86400000, count: 14, label: "day" },
};

export function mountEvaluations(main, signal) {
  let bucket = "day";
  withTenant(main, signal, "evaluations", "Evaluations", async (tenantId, body) => {
    const choose = h("select", { id: "evaluations-bucket" },
      h("option", { value: "hour" }, "last 24 hours, per hour"),
      h("option", { value: "day" }, "last 14 days, per day"));
    choose.value = bucket;
    const chartSlot = h("div", { class: "chart-slot" });
    const tableSlot = h("div", { class: "table-wrap" });
    body.append(
      h("div", { class: "filters" }, h("label", { for: "evaluations-bucket" }, "Period"), choose),
      h("section", { class: "panel", "aria-labelledby": "chart-title" },
        h("h2", { id: "chart-title" }, "Pass rate per version over time"), chartSlot),
      h("section", { class: "panel", "aria-labelledby": "versions-title" },
        h("h2", { id: "versions-title" }, "Versions"), tableSlot));
    const versions = await versionsOf(tenantId, signal);
    tableSlot.append(versionTable(versions));
    const draw = async () => {
      chartSlot.replaceChildren(h("p", { class: "hint" }, "Loading…"));
      const b = BUCKETS[bucket];
      const toMs = Math.ceil(Date.now() / b.ms) * b.ms;
      const fromMs = toMs - b.count * b.ms;
      const series = await chartSeries(versions, bucket, fromMs, toMs, signal);
      chartSlot.replaceChildren(passRateChart(series, fromMs, toMs, b.ms, b.label), legend(series));
      if (series.length === 0) chartSlot.append(h("p", { class: "na" }, "No evaluated calls yet."));
    };
    choose.addEventListener("change", async () => {
      bucket = choose.value;
      ready(main, false);
      try {
        await draw();
      } catch (e) {
        if (!aborted(e)) chartSlot.replaceChildren(h("p", { class: "na", role: "alert" }, `Chart not available: ${e.describe ? e.describe() : e.message}`));
      }
      if (!signal.aborted) ready(main);
    });
    try {
      await draw();
    } catch (e) {
      if (aborted(e)) throw e;
      chartSlot.replaceChildren(h("p", { class: "na", role: "alert" }, `Chart not available: ${e.describe ? e.describe() : e.message}`));
    }
  });
}

/** Every version of the tenant's agents, with its all-time evaluation summary. */
async function versionsOf(tenantId, signal) {
  const agents = await api(`/api/v1/admin/agents${query({ tenant_id: tenantId })}`, { as: "admin", signal });
  const out = [];
  for (const agent of agents.data || []) {
    const list = await api(`/api/v1/admin/agents/${encodeURIComponent(agent.id)}/versions`, { as: "admin", signal });
    const versions = list.data || [];
    const summaries = await Promise.all(versions.map((v) => api(
      `/api/v1/admin/agent-versions/${encodeURIComponent(v.id)}/evaluation-summary`, { as: "admin", signal },
    ).catch((e) => {
      if (aborted(e)) throw e;
      return null;
    })));
    versions.forEach((v, i) => out.push({ ...v, agent_key: v.agent_key || agent.key, summary: summaries[i] }));
  }
  return out;
}

function versionTable(versions) {
  const body = h("tbody");
  if (versions.length === 0) body.append(emptyRow(9, "No agent versions."));
  for (const v of versions) {
    const s = v.summary;
    const ci = s && s.pass_rate_ci95 ? `${percent(s.pass_rate_ci95.low)} – ${percent(s.pass_rate_ci95.high)}` : "—";
    body.append(h("tr", { "data-version-id": v.id },
      h("td", {}, v.agent_key), h("td", {}, `v${v.version}`), h("td", {}, v.status),
      h("td", { "data-col": "evaluated" }, s ? String(s.evaluated) : "—"),
      h("td", { "data-col": "passed" }, s ? String(s.passed) : "—"),
      h("td", { "data-col": "pass-rate" }, s ? percent(s.pass_rate) : "—"),
      h("td", {}, ci),
      h("td", {}, s ? percent(s.transfer_rate) : "—"),
      h("td", {}, s && s.first_audio_p95_ms !== null && s.first_audio_p95_ms !== undefined ? `${s.first_audio_p50_ms} / ${s.first_audio_p95_ms} ms` : "—")));
  }
  return h("table", { id: "evaluations-table", class: "grid" },
    h("caption", { class: "sr-only" }, "Evaluation summary per agent version"),
    h("thead", {}, h("tr", {}, ["Agent", "Version", "Status", "Evaluated", "Passed", "Pass rate", "95 % interval", "Transfer rate", "First audio p50 / p95"]
      .map((t) => h("th", { scope: "col" }, t)))),
    body);
}

/**
 * The chart's lines: per agent, `GET /api/v1/admin/agents/{id}/evaluation-series` (every
 * version's evaluated / passed per UTC bucket, one request); on a server without it (404
 * `route_not_found`), one evaluation summary per version and bucket (its `from`/`to`).
 */
async function chartSeries(versions, bucket, fromMs, toMs, signal) {
  const b = BUCKETS[bucket];
  const out = [];
  for (const agentId of [...new Set(versions.map((v) => v.agent_id))]) {
    let byVersion = null;
    try {
      const r = await api(`/api/v1/admin/agents/${encodeURIComponent(agentId)}/evaluation-series${query({
        bucket, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(),
      })}`, { as: "admin", signal });
      byVersion = new Map((r.versions || []).map((v) => [v.agent_version_id, (v.points || []).map((p) => ({
        t: Date.parse(p.bucket_start) + b.ms / 2,
        evaluated: p.evaluated,
        passed: p.passed,
        rate: p.pass_rate,
      }))]));
    } catch (e) {
      if (aborted(e) || !(e.status === 404 && e.code === "route_not_found")) throw e;
    }
    for (const v of versions.filter((x) => x.agent_id === agentId)) {
      if (!v.summary || v.summary.evaluated === 0) continue;
      const points = byVersion
        ? byVersion.get(v.id) || []
        : await summariesPerBucket(v.id, b, fromMs, toMs, signal);
      out.push({ key: v.id, label: `${v.agent_key} v${v.version}`, points });
    }
  }
  return out;
}

/** One version's pass rate per bucket from its summary over each bucket's window. */
async function summariesPerBucket(versionId, b, fromMs, toMs, signal) {
  const starts = [];
  for (let t = fromMs; t < toMs; t += b.ms) starts.push(t);
  const id = encodeURIComponent(versionId);
  const summaries = await Promise.all(starts.map((t) => api(
    `/api/v1/admin/agent-versions/${id}/evaluation-summary${query({
      from: new Date(t).toISOString(), to: new Date(t + b.ms).toISOString(),
    })}`, { as: "admin", signal },
  )));
  return summaries.map((s, i) => ({
    t: starts[i] + b.ms / 2,
    evaluated: s.evaluated,
    passed: s.passed,
    rate: s.pass_rate,
  }));
}
