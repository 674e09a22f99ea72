//! The result of a run, as JSON (`--json FILE`) and as a human text report (the same
//! figures).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::chaos::ChaosReport;
use super::faults::{Drain, Recovery};
use super::histogram::LatencySummary;
use super::probe::DirectionReport;
use super::procfs::{Machine, MachineCpu, ProcessReport};
use super::soak::SoakReport;

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Base URL of the server under test.
    pub server: String,
    /// The machine the load generator ran on.
    pub machine: Machine,
    /// Concurrent calls requested.
    pub calls_requested: u32,
    /// Length of every call (from its media stream's start), seconds.
    pub call_length_seconds: f64,
    /// Calls were started evenly over this many seconds.
    pub ramp_seconds: f64,
    /// From the first call placed to the last call ended, seconds.
    pub wall_seconds: f64,
    /// Call outcomes.
    pub calls: CallsReport,
    /// Caller audio relayed to the model.
    pub caller_to_ai: DirectionReport,
    /// Model audio relayed to the caller.
    pub ai_to_caller: DirectionReport,
    /// From the start of a call's media stream to the first agent audio the caller
    /// received (one sample per call).
    pub first_audio: LatencySummary,
    /// Call setup as the carrier sees it: from sending a call's `incoming-call` webhook to
    /// its TwiML read whole (the runtime's routing, admission and database write, plus the
    /// loopback round trip and the generator's own scheduling); one sample per call.
    pub call_setup: LatencySummary,
    /// The simulated model's own latency (response created → first audio), ms: part of
    /// every first-audio and turn-response figure, not added by the runtime.
    pub model_latency_ms: u64,
    /// From the end of each caller utterance to the next agent audio the caller received
    /// (includes the 500 ms of silence server VAD waits for, and the model latency).
    pub turn_response: LatencySummary,
    /// Barge-ins.
    pub barge_ins: BargeIns,
    /// Realtime model sessions the runtime opened.
    pub realtime_sessions: u64,
    /// How late the load generator's scheduler woke a 10 ms timer (sampled all run long):
    /// the generator's own queuing, which is part of every relay-latency sample (a frame
    /// crosses one simulator task on each side). Large values mean the figures measure the
    /// generator as much as the runtime.
    pub load_generator_lag: LatencySummary,
    /// CPU and memory of the server (when `--server-pid` was given).
    pub server_process: Option<ProcessReport>,
    /// CPU and memory of the load generator itself (both simulators and every caller).
    pub load_generator_process: Option<ProcessReport>,
    /// How busy the whole machine was (from `/proc/stat`).
    pub machine_cpu: Option<MachineCpu>,
    /// `--chaos`: what became of every call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosReport>,
    /// `--fault kill`: the recovery after the restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// `--fault term`: the drain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
    /// `--soak`: the server's resources over time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakReport>,
}

/// How the calls ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallsReport {
    /// Calls that streamed until the caller hung up and heard the agent.
    pub completed: u64,
    /// The others.
    pub failed: u64,
    /// Failed calls by reason.
    pub failures: BTreeMap<String, u64>,
    /// Most calls in progress at once (sampled every second).
    pub peak_concurrent: u64,
    /// Sum of every call's connected time, seconds.
    pub call_seconds: f64,
}

/// Barge-ins: the caller speaking while the agent's answer plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BargeIns {
    /// Caller turns scripted to start while an answer should still be playing.
    pub attempted: u64,
    /// `clear` messages the callers received (the runtime stopped playback).
    pub clears_received: u64,
    /// Model responses cancelled because the caller spoke (`turn_detected`).
    pub responses_cancelled: u64,
    /// `conversation.item.truncate`s the model received.
    pub truncations: u64,
}

fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// Seconds without a useless `.0`, else with one decimal.
fn secs(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// `p50 … ms, p99 … ms, max … ms (n = …)`.
pub(crate) fn latency_line(l: &LatencySummary) -> String {
    format!(
        "p50 {} ms, p99 {} ms, max {} ms (n = {})",
        ms(l.p50_ms),
        ms(l.p99_ms),
        ms(l.max_ms),
        l.count
    )
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn direction(out: &mut String, name: &str, d: &DirectionReport) {
    let _ = writeln!(
        out,
        "{name}: {} frames sent, {} relayed, {} lost ({:.3} %)",
        d.frames_sent,
        d.frames_relayed,
        d.frames_lost,
        d.lost_percent()
    );
    let mut notes = Vec::new();
    if d.frames_before_ai_ready > 0 {
        notes.push(format!(
            "{} sent before the AI session was ready",
            d.frames_before_ai_ready
        ));
    }
    if d.frames_at_hang_up > 0 {
        notes.push(format!("{} in flight at hang-up", d.frames_at_hang_up));
    }
    if d.frames_cleared > 0 {
        notes.push(format!("{} discarded at a barge-in", d.frames_cleared));
    }
    if d.frames_unexpected > 0 {
        notes.push(format!("{} unexpected", d.frames_unexpected));
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "  not counted as lost: {}", notes.join(", "));
    }
    let _ = writeln!(out, "  relay latency: {}", latency_line(&d.latency));
}

fn process(out: &mut String, name: &str, p: &ProcessReport) {
    let _ = writeln!(
        out,
        "{name} (pid {}): CPU {:.1} s = {:.2} ms per call-second ({:.0} % of one core); RSS {} -> peak {} = {:.1} KiB per call",
        p.pid,
        p.cpu_seconds,
        p.cpu_ms_per_call_second,
        p.cpu_percent_of_one_core,
        mib(p.rss_baseline_kib),
        mib(p.rss_peak_kib),
        p.rss_per_call_kib,
    );
}

/// The human report.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "load test: {} calls of {} s against {} (ramp {} s, {:.1} s wall, {} CPUs)",
        r.calls_requested,
        secs(r.call_length_seconds),
        r.server,
        secs(r.ramp_seconds),
        r.wall_seconds,
        r.machine.cpus
    );
    let _ = writeln!(
        out,
        "calls: {} completed, {} failed; peak {} concurrent; {:.0} call-seconds",
        r.calls.completed, r.calls.failed, r.calls.peak_concurrent, r.calls.call_seconds
    );
    for (reason, count) in &r.calls.failures {
        let _ = writeln!(out, "  failed: {reason}: {count}");
    }
    direction(&mut out, "caller -> AI", &r.caller_to_ai);
    direction(&mut out, "AI -> caller", &r.ai_to_caller);
    let _ = writeln!(
        out,
        "call setup (incoming-call webhook -> TwiML): {}",
        latency_line(&r.call_setup)
    );
    let _ = writeln!(
        out,
        "AI first audio: {} (the simulated model adds {} ms)",
        latency_line(&r.first_audio),
        r.model_latency_ms
    );
    let _ = writeln!(
        out,
        "turn response (end of caller speech -> agent audio): {}",
        latency_line(&r.turn_response)
    );
    let b = &r.barge_ins;
    let _ = writeln!(
        out,
        "barge-ins: {} attempted, {} clears received, {} responses cancelled, {} truncations; {} model sessions",
        b.attempted, b.clears_received, b.responses_cancelled, b.truncations, r.realtime_sessions
    );
    let _ = writeln!(
        out,
        "load generator scheduling lag: {}",
        latency_line(&r.load_generator_lag)
    );
    match &r.server_process {
        Some(p) => process(&mut out, "server", p),
        None => {
            let _ = writeln!(
                out,
                "server: CPU and memory not measured (no --server-pid, or the process ended during the run)"
            );
        }
    }
    if let Some(p) = &r.load_generator_process {
        process(&mut out, "load generator", p);
    }
    if let Some(m) = &r.machine_cpu {
        let _ = writeln!(
            out,
            "machine: {:.0} % of {} CPUs busy; {:.1} s of CPU used by other processes; {:.1} s stolen",
            m.busy_percent, r.machine.cpus, m.other_seconds, m.steal_seconds
        );
    }
    if let Some(c) = &r.chaos {
        c.render(&mut out);
    }
    if let Some(k) = &r.recovery {
        recovery(&mut out, k);
    }
    if let Some(d) = &r.drain {
        drain(&mut out, d);
    }
    if let Some(s) = &r.soak {
        s.render(&mut out);
    }
    out
}

fn seconds(v: Option<f64>) -> String {
    v.map_or_else(|| String::from("never (deadline)"), |v| format!("{v:.1} s"))
}

fn recovery(out: &mut String, k: &Recovery) {
    let _ = writeln!(
        out,
        "kill -9 with {} live calls: ready again after {}; every record terminal after {}; every completion event after {}; concurrency 0 after {}",
        k.calls_live_at_fault,
        seconds(k.ready_after_seconds),
        seconds(k.records_final_after_seconds),
        seconds(k.completion_events_after_seconds),
        seconds(k.concurrency_zero_after_seconds),
    );
    let _ = writeln!(
        out,
        "  records: {} calls, {} terminal, {} open, {} counted live; voice.call.completed per call: {} none, {} one, {} more",
        k.records.calls,
        k.records.completed,
        k.records.open,
        k.records.live,
        k.completion_events.none,
        k.completion_events.one,
        k.completion_events.more,
    );
    let reasons: Vec<String> = k
        .end_reasons
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let _ = writeln!(out, "  end reasons: {}", reasons.join(", "));
}

fn drain(out: &mut String, d: &Drain) {
    let opt = |v: Option<u64>| v.map_or_else(|| String::from("not read"), |v| v.to_string());
    let _ = writeln!(
        out,
        "SIGTERM with {} live calls: exited after {}, exit code {}",
        d.calls_live_at_fault,
        seconds(d.exited_after_seconds),
        d.exit_code
            .map_or_else(|| String::from("unknown"), |c| c.to_string()),
    );
    let c = &d.callers;
    let _ = writeln!(
        out,
        "  callers: {} heard an application error, {} fallback, {} resumed, {} normal",
        c.application_error, c.fallback, c.resumed, c.normal
    );
    for (sid, what) in c.application_error_calls.iter().take(10) {
        let _ = writeln!(out, "  application error: {sid}: {what}");
    }
    for (kind, n) in &c.failed_webhooks {
        let _ = writeln!(out, "  failed webhooks: {kind}: {n}");
    }
    let _ = writeln!(
        out,
        "  records left open after exit: {} calls, {} active sessions{}",
        opt(d.records_left_open),
        opt(d.sessions_left_active),
        d.records_error
            .as_ref()
            .map_or_else(String::new, |e| format!(" ({e})"))
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::loadtest::procfs::usage;

    pub(crate) fn sample() -> Report {
        let latency = LatencySummary {
            count: 1000,
            p50_ms: Some(0.4123),
            p99_ms: Some(12.345),
            max_ms: Some(250.0),
            mean_ms: Some(0.9),
        };
        let direction = DirectionReport {
            frames_sent: 300_000,
            frames_relayed: 299_000,
            frames_lost: 3,
            frames_before_ai_ready: 950,
            frames_at_hang_up: 47,
            frames_cleared: 0,
            frames_unexpected: 0,
            latency,
        };
        Report {
            server: "http://127.0.0.1:5050".into(),
            machine: Machine {
                cpus: 2,
                kernel: Some("6.1".into()),
                memory_kib: Some(1 << 20),
            },
            calls_requested: 100,
            call_length_seconds: 60.0,
            ramp_seconds: 10.0,
            wall_seconds: 71.5,
            calls: CallsReport {
                completed: 99,
                failed: 1,
                failures: BTreeMap::from([("no_ai_audio".to_owned(), 1)]),
                peak_concurrent: 100,
                call_seconds: 6000.0,
            },
            caller_to_ai: direction,
            ai_to_caller: DirectionReport {
                frames_before_ai_ready: 0,
                frames_lost: 0,
                frames_cleared: 5,
                ..direction
            },
            first_audio: LatencySummary {
                count: 0,
                p50_ms: None,
                p99_ms: None,
                max_ms: None,
                mean_ms: None,
            },
            call_setup: latency,
            model_latency_ms: 200,
            turn_response: latency,
            barge_ins: BargeIns {
                attempted: 300,
                clears_received: 280,
                responses_cancelled: 20,
                truncations: 280,
            },
            realtime_sessions: 100,
            load_generator_lag: latency,
            server_process: Some(usage(42, 30.0, 60.0, 20_480, 122_880, 100, 6000.0)),
            load_generator_process: None,
            machine_cpu: Some(MachineCpu {
                busy_percent: 97.5,
                busy_seconds: 130.0,
                other_seconds: 4.25,
                steal_seconds: 0.0,
            }),
            chaos: None,
            recovery: None,
            drain: None,
            soak: None,
        }
    }

    #[test]
    fn the_text_report_carries_every_figure() {
        let text = render_text(&sample());
        let expected = [
            "load test: 100 calls of 60 s against http://127.0.0.1:5050 (ramp 10 s, 71.5 s wall, 2 CPUs)",
            "calls: 99 completed, 1 failed; peak 100 concurrent; 6000 call-seconds",
            "  failed: no_ai_audio: 1",
            "caller -> AI: 300000 frames sent, 299000 relayed, 3 lost (0.001 %)",
            "  not counted as lost: 950 sent before the AI session was ready, 47 in flight at hang-up",
            "  relay latency: p50 0.41 ms, p99 12.3 ms, max 250 ms (n = 1000)",
            "AI -> caller: 300000 frames sent, 299000 relayed, 0 lost (0.000 %)",
            "  not counted as lost: 47 in flight at hang-up, 5 discarded at a barge-in",
            "AI first audio: p50 - ms, p99 - ms, max - ms (n = 0) (the simulated model adds 200 ms)",
            "load generator scheduling lag: p50 0.41 ms, p99 12.3 ms, max 250 ms (n = 1000)",
            "barge-ins: 300 attempted, 280 clears received, 20 responses cancelled, 280 truncations; 100 model sessions",
            "machine: 98 % of 2 CPUs busy; 4.2 s of CPU used by other processes; 0.0 s stolen",
            "server (pid 42): CPU 30.0 s = 5.00 ms per call-second (50 % of one core); RSS 20.0 MiB -> peak 120.0 MiB = 1024.0 KiB per call",
        ];
        for line in expected {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let mut no_server = sample();
        no_server.server_process = None;
        no_server.ramp_seconds = 0.5;
        let text = render_text(&no_server);
        assert!(text.contains("not measured (no --server-pid, or the process ended"));
        assert!(text.contains("(ramp 0.5 s,"), "{text}");
    }

    #[test]
    fn the_json_report_has_the_same_figures() {
        let json = serde_json::to_value(sample()).expect("json");
        assert_eq!(json["calls"]["completed"], 99);
        assert_eq!(json["calls"]["failures"]["no_ai_audio"], 1);
        assert_eq!(json["caller_to_ai"]["frames_lost"], 3);
        assert_eq!(json["caller_to_ai"]["latency"]["p99_ms"], 12.345);
        assert_eq!(json["first_audio"]["p50_ms"], serde_json::Value::Null);
        assert_eq!(json["server_process"]["cpu_ms_per_call_second"], 5.0);
        assert_eq!(json["server_process"]["rss_per_call_kib"], 1024.0);
        assert_eq!(json["machine"]["cpus"], 2);
    }
}
