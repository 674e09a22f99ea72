//! `--soak MINUTES`: `--calls` slots, each placing calls of `--duration` one after another
//! (churn: a call ended is replaced at once) until MINUTES have passed, while the server's
//! resident memory, open file descriptors (`/proc/PID/fd`) and what `/metrics` says about
//! live work are sampled: once before the calls, every `--sample-every` seconds from 5 s
//! after the ramp until the churn stops (the first and last of these are the report's
//! start and end), and once every call has ended.
//!
//! Tokio's task count needs `tokio_unstable` runtime metrics, which this build does not
//! enable; the samples carry the server's own gauges of live work instead (`calls_active`,
//! `media_upgrades_pending`, `webhook_outbox_pending`, `evaluation_jobs_pending`) and the
//! number of its OS threads.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

/// Gauges of `/metrics` kept in every sample (summed over their labels).
pub const GAUGES: [&str; 4] = [
    "calls_active",
    "media_upgrades_pending",
    "webhook_outbox_pending",
    "evaluation_jobs_pending",
];

/// One sample of the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the start of the run.
    pub at_seconds: f64,
    /// Calls in progress at the load generator.
    pub calls_in_progress: u64,
    /// Calls completed so far.
    pub calls_done: u64,
    /// `VmRSS`, KiB.
    pub rss_kib: Option<u64>,
    /// Entries of `/proc/PID/fd`.
    pub open_fds: Option<u64>,
    /// `Threads` of `/proc/PID/status`.
    pub threads: Option<u64>,
    /// The [`GAUGES`] read from `/metrics`.
    pub gauges: BTreeMap<String, f64>,
}

/// The soak part of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoakReport {
    /// Minutes of churn.
    pub minutes: f64,
    /// Calls placed in all.
    pub calls_placed: u64,
    /// Tokio task counts are not available (see the module docs).
    pub tokio_tasks: &'static str,
    /// Before the first call.
    pub baseline: Option<Sample>,
    /// The first sample at full load (5 s after the ramp).
    pub start: Option<Sample>,
    /// The last sample at full load (before the churn stopped).
    pub end: Option<Sample>,
    /// Once every call had ended.
    pub after: Option<Sample>,
    /// Every sample at full load, every `--sample-every` seconds.
    pub series: Vec<Sample>,
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}

/// `Threads` of `/proc/PID/status`.
pub fn threads(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The [`GAUGES`] of a Prometheus text exposition, each summed over its label sets.
pub fn parse_gauges(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name_labels.split('{').next().unwrap_or("").trim();
        if GAUGES.contains(&name)
            && let Ok(v) = value.trim().parse::<f64>()
        {
            *out.entry(name.to_owned()).or_insert(0.0) += v;
        }
    }
    out
}

/// Takes one sample.
pub async fn sample(
    client: &reqwest::Client,
    server: &str,
    pid: Option<u32>,
    started: Instant,
    in_progress: u64,
    done: u64,
) -> Sample {
    let gauges = match client.get(format!("{server}/metrics")).send().await {
        Ok(r) => parse_gauges(&r.text().await.unwrap_or_default()),
        Err(_) => BTreeMap::new(),
    };
    Sample {
        at_seconds: started.elapsed().as_secs_f64(),
        calls_in_progress: in_progress,
        calls_done: done,
        rss_kib: pid.and_then(super::procfs::rss_kib),
        open_fds: pid.and_then(open_fds),
        threads: pid.and_then(threads),
        gauges,
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| String::from("-"), |v| v.to_string())
}

impl SoakReport {
    /// The text lines of the report.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "soak: {:.1} min of churn, {} calls placed, {} samples",
            self.minutes,
            self.calls_placed,
            self.series.len()
        );
        for (name, s) in [
            ("before the calls", &self.baseline),
            ("start", &self.start),
            ("end", &self.end),
            ("after the calls", &self.after),
        ] {
            if let Some(s) = s {
                let _ = writeln!(
                    out,
                    "  {name} ({:.0} s): RSS {} KiB, {} open fds, {} threads, {} calls live (server: {})",
                    s.at_seconds,
                    opt(s.rss_kib),
                    opt(s.open_fds),
                    opt(s.threads),
                    s.calls_in_progress,
                    s.gauges
                        .get("calls_active")
                        .map_or_else(|| String::from("-"), |v| format!("{v:.0}"))
                );
            }
        }
        let _ = writeln!(out, "  tokio tasks: {}", self.tokio_tasks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_summed_over_labels_and_others_ignored() {
        let text = "# HELP calls_active live calls\n# TYPE calls_active gauge\n\
                    calls_active{tenant=\"a\"} 3\ncalls_active{tenant=\"b\"} 4\n\
                    media_upgrades_pending 0\nhttp_requests_total{route=\"x\"} 99\n";
        let g = parse_gauges(text);
        assert_eq!(g.get("calls_active"), Some(&7.0));
        assert_eq!(g.get("media_upgrades_pending"), Some(&0.0));
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn this_process_has_fds_and_threads() {
        let pid = std::process::id();
        assert!(open_fds(pid).is_some_and(|n| n > 0));
        assert!(threads(pid).is_some_and(|n| n > 0));
    }
}
