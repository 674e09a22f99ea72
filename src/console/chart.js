// The pass-rate chart: an SVG drawn by the page (no library): one line per version over
// time buckets, labelled axes, and a `<title>` on every point (read by screen readers and
// shown as a tooltip). Colours come from the stylesheet (`.series-N`), never inline styles.

import { h } from "./dom.js";

const W = 760;
const H = 320;
const M = { top: 16, right: 40, bottom: 56, left: 64 };

/**
 * Draws `series` ([{ label, points: [{ t: ms, evaluated, passed, rate }] }]) between
 * `fromMs` and `toMs`, buckets `bucketMs` wide, into a new `svg#pass-rate-chart`.
 */
export function passRateChart(series, fromMs, toMs, bucketMs, bucketLabel) {
  const svg = h("svg:svg", {
    id: "pass-rate-chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-labelledby": "pass-rate-chart-title pass-rate-chart-desc", class: "chart",
  });
  svg.append(
    h("svg:title", { id: "pass-rate-chart-title" }, "Evaluation pass rate per version over time"),
    h("svg:desc", { id: "pass-rate-chart-desc" },
      `One line per agent version; each point is the pass rate of the calls evaluated in one ${bucketLabel}.`));
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const span = Math.max(1, toMs - fromMs);
  const x = (t) => M.left + ((t - fromMs) / span) * plotW;
  const y = (rate) => M.top + (1 - rate) * plotH;

  // Axes and grid.
  const axes = h("svg:g", { class: "axes" });
  for (let i = 0; i <= 4; i += 1) {
    const rate = i / 4;
    axes.append(
      h("svg:line", { x1: M.left, x2: W - M.right, y1: y(rate), y2: y(rate), class: "grid-line" }),
      h("svg:text", { x: M.left - 8, y: y(rate) + 4, "text-anchor": "end", class: "tick" }, `${rate * 100} %`));
  }
  const ticks = 6;
  for (let i = 0; i <= ticks; i += 1) {
    const t = fromMs + (span * i) / ticks;
    axes.append(
      h("svg:line", { x1: x(t), x2: x(t), y1: M.top + plotH, y2: M.top + plotH + 4, class: "axis-line" }),
      h("svg:text", { x: x(t), y: M.top + plotH + 18, "text-anchor": "middle", class: "tick" }, tickLabel(t, span)));
  }
  axes.append(
    h("svg:line", { x1: M.left, x2: M.left, y1: M.top, y2: M.top + plotH, class: "axis-line" }),
    h("svg:line", { x1: M.left, x2: W - M.right, y1: M.top + plotH, y2: M.top + plotH, class: "axis-line" }),
    h("svg:text", {
      x: 16, y: M.top + plotH / 2, transform: `rotate(-90 16 ${M.top + plotH / 2})`,
      "text-anchor": "middle", class: "axis-label",
    }, "Pass rate"),
    h("svg:text", { x: M.left + plotW / 2, y: H - 10, "text-anchor": "middle", class: "axis-label" },
      `Time (${bucketLabel} buckets, local time)`));
  svg.append(axes);

  series.forEach((s, i) => {
    const g = h("svg:g", { class: `series series-${i % 8}`, "data-version": s.key || s.label });
    const points = s.points.filter((p) => p.evaluated > 0 && p.rate !== null && p.rate !== undefined);
    if (points.length > 1) {
      // A bucket without evaluations breaks the line (no rate to draw through).
      const d = points.map((p, j) => {
        const jump = j === 0 || p.t - points[j - 1].t > bucketMs * 1.5;
        return `${jump ? "M" : "L"}${x(p.t).toFixed(1)},${y(p.rate).toFixed(1)}`;
      }).join(" ");
      g.append(h("svg:path", { d, class: "line" }));
    }
    for (const p of points) {
      g.append(h("svg:circle", { cx: x(p.t).toFixed(1), cy: y(p.rate).toFixed(1), r: 4, class: "point" },
        h("svg:title", {},
          `${s.label} · ${new Date(p.t).toLocaleString()} · ${(p.rate * 100).toFixed(1)} % (${p.passed}/${p.evaluated})`)));
    }
    svg.append(g);
  });
  return svg;
}

function tickLabel(t, span) {
  const d = new Date(t);
  if (span <= 2 * 86400000) return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

/** The legend of a chart's series (text, with the series' colour class). */
export function legend(series) {
  return h("ul", { class: "legend", "aria-label": "Versions" },
    series.map((s, i) => h("li", {}, h("span", { class: `swatch series-${i % 8}`, "aria-hidden": "true" }), s.label)));
}

/** The stable/canary split as a bar (SVG: widths are attributes, not inline styles). */
export function splitBar(stable, canary) {
  const label = `Split: ${stable} % stable, ${canary} % canary`;
  return h("svg:svg", { class: "split", viewBox: "0 0 100 6", preserveAspectRatio: "none", role: "img", "aria-label": label },
    h("svg:title", {}, label),
    h("svg:rect", { x: 0, y: 0, width: stable, height: 6, class: "split-stable" }),
    h("svg:rect", { x: stable, y: 0, width: canary, height: 6, class: "split-canary" }));
}
