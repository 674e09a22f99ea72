// The operator console's entry: sign-in, the navigation and the hash router. Each page is a
// module exporting `mount(main, signal, params)`; leaving a page aborts its signal, which
// stops its streams, timers and pending requests.

import { api, ApiError, aborted, query, saveSession, session, signOut } from "./api.js";
import { h, ready, say, startPage } from "./dom.js";
import * as live from "./live.js";
import * as calls from "./calls.js";
import * as callbacks from "./callbacks.js";
import * as webhooks from "./webhooks.js";
import * as admin from "./admin.js";

const main = document.getElementById("page");
const nav = document.getElementById("nav");
let current = null;

/** The routes: [hash pattern, the page's mount, who may open it (the key it needs)]. */
const ROUTES = [
  [/^#\/live$/, live.mount, "tenant"],
  [/^#\/calls$/, calls.mountList, "tenant"],
  [/^#\/calls\/([A-Za-z0-9_-]+)$/, calls.mountDetail, "tenant"],
  [/^#\/callbacks$/, callbacks.mount, "tenant"],
  [/^#\/webhooks$/, webhooks.mount, "tenant"],
  [/^#\/admin\/readiness$/, admin.mountReadiness, "admin"],
  [/^#\/admin\/rollouts$/, admin.mountRollouts, "admin"],
  [/^#\/admin\/evaluations$/, admin.mountEvaluations, "admin"],
];

/** Opens `hash` (routing once, whether or not the hash changes). */
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function home(s) {
  return s.tenantKey ? "#/live" : "#/admin/readiness";
}

function route() {
  if (current) current.abort();
  current = new AbortController();
  const s = session();
  renderNav(s);
  if (!s) {
    if (location.hash !== "" && location.hash !== "#/signin") {
      history.replaceState(null, "", "#/signin");
    }
    mountSignIn();
    return;
  }
  const hash = location.hash;
  for (const [pattern, mount, who] of ROUTES) {
    const m = pattern.exec(hash);
    if (!m) continue;
    if ((who === "tenant" && !s.tenantKey) || (who === "admin" && !s.adminKey)) break;
    markCurrent(hash);
    mount(main, current.signal, m.slice(1));
    main.focus({ preventScroll: true });
    return;
  }
  location.replace(home(s));
}

function renderNav(s) {
  nav.hidden = !s;
  if (!s) return;
  document.getElementById("nav-tenant").hidden = !s.tenantKey;
  const adminGroup = document.getElementById("nav-admin");
  adminGroup.hidden = !s.adminKey;
  // A link works only with the key its pages need (without it, it has no href).
  enableLinks(adminGroup, !!s.adminKey);
  enableLinks(document.getElementById("nav-tenant"), !!s.tenantKey);
  document.getElementById("who-operator").textContent = `Operator: ${s.operator}`;
  document.getElementById("who-tenant").textContent = s.tenantName
    ? `Tenant: ${s.tenantName}` : "Admin only";
}

function enableLinks(group, on) {
  for (const a of group.querySelectorAll("a")) {
    if (!a.dataset.href) a.dataset.href = a.getAttribute("href");
    if (on) a.setAttribute("href", a.dataset.href);
    else a.removeAttribute("href");
  }
}

function markCurrent(hash) {
  for (const a of nav.querySelectorAll("a[href]")) {
    const href = a.getAttribute("href");
    const on = hash === href || (href === "#/calls" && hash.startsWith("#/calls/"));
    if (on) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function mountSignIn() {
  startPage(main, "signin");
  const error = h("p", { id: "signin-error", role: "alert", class: "message", "data-kind": "error" });
  const tenant = h("input", {
    id: "signin-tenant-key", type: "password", autocomplete: "off", spellcheck: "false",
    "aria-describedby": "signin-help",
  });
  const adminKey = h("input", {
    id: "signin-admin-key", type: "password", autocomplete: "off", spellcheck: "false",
    "aria-describedby": "signin-help",
  });
  const operator = h("input", {
    id: "signin-operator", type: "text", autocomplete: "name", required: true, maxlength: "100",
  });
  const submit = h("button", { id: "signin-submit", type: "submit", class: "primary" }, "Sign in");
  const form = h("form", { class: "signin", novalidate: true, "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Operator console"),
    h("p", { id: "signin-help", class: "hint" },
      "Sign in with a tenant key that has the operator scope, an admin key, or both. ",
      "Keys stay in this browser tab only and are forgotten when you sign out or close it."),
    h("label", { for: "signin-tenant-key" }, "Tenant key"), tenant,
    h("label", { for: "signin-admin-key" }, "Admin key"), adminKey,
    h("label", { for: "signin-operator" }, "Your name"), operator,
    submit, error);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    signIn(tenant.value.trim(), adminKey.value.trim(), operator.value.trim(), error, submit);
  });
  main.append(form);
  ready(main);
  tenant.focus();
}

async function signIn(tenantKey, adminKey, operator, error, submit) {
  say(error, "");
  if (!tenantKey && !adminKey) {
    say(error, "Enter a tenant key, an admin key, or both.", "error");
    return;
  }
  if (!operator) {
    say(error, "Enter your name: it is recorded on the callback tasks you claim.", "error");
    return;
  }
  submit.disabled = true;
  ready(main, false);
  const keys = { tenantKey, adminKey };
  const value = { tenantKey, adminKey, operator, scopes: [], tenantId: null, tenantName: null };
  try {
    if (tenantKey) {
      const me = await checked(api("/api/v1/me", { keys }), "Tenant key");
      if (!me.scopes.includes("operator")) {
        throw new Error(`Tenant key: this key (${me.key_id}) lacks the operator scope `
          + `(it has: ${me.scopes.join(", ") || "none"}). Ask an admin for an operator key.`);
      }
      value.scopes = me.scopes;
      value.tenantId = me.tenant_id;
      value.tenantName = me.tenant_name;
    }
    if (adminKey) {
      await checked(api(`/api/v1/admin/tenants${query({ limit: 1 })}`, { as: "admin", keys }), "Admin key");
    }
    saveSession(value);
    go(home(value));
  } catch (e) {
    say(error, e.message, "error");
    submit.disabled = false;
    ready(main);
  }
}

async function checked(promise, what) {
  try {
    return await promise;
  } catch (e) {
    if (e instanceof ApiError) {
      const why = e.status === 401 ? "not accepted (unknown or revoked key)" : e.describe();
      throw new Error(`${what}: ${why}`);
    }
    throw e;
  }
}

document.getElementById("signout").addEventListener("click", () => {
  if (current) current.abort();
  signOut();
  go("#/signin");
});

window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (e) => {
  if (aborted(e.reason)) e.preventDefault();
});
route();
