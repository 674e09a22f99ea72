//! The load generator end to end: three calls of three seconds against the real application
//! in-process (SQLite in a temporary folder), wired to the load generator's realtime
//! simulator. Every call must complete, no frame may be lost in either direction, and every
//! figure must be present.

use std::net::SocketAddr;
use std::time::Duration;

use stateset_voice::config::{Config, RawSettings};
use stateset_voice::loadtest::{LoadTest, Options, report};
use stateset_voice::startup::Application;

const ADMIN_KEY: &str = "loadtest-admin-key-0123456789";
const MASTER_KEY: &str = "loadtest-master-key-0123456789abcdef0123456789";
const REALTIME_KEY: &str = "sk-loadtest-e2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_calls_relay_every_frame_and_report_every_figure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = Options {
        admin_key: ADMIN_KEY.to_owned(),
        calls: 3,
        duration: Duration::from_secs(3),
        ramp: Duration::from_millis(500),
        realtime_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        realtime_key: REALTIME_KEY.to_owned(),
        // The application runs in this process: its CPU and memory are ours.
        server_pid: Some(std::process::id()),
        ..Options::default()
    };
    let load = LoadTest::start(&options).await.expect("simulators start");

    let mut raw = RawSettings::default();
    raw.set("OPENAI_REALTIME_URL", load.realtime_url());
    raw.set("OPENAI_API_KEY", REALTIME_KEY);
    raw.set("BIND_ADDR", "127.0.0.1:0");
    raw.set(
        "DATABASE_URL",
        format!("sqlite://{}", dir.path().join("voice.db").display()),
    );
    raw.set("ADMIN_API_KEY", ADMIN_KEY);
    raw.set("MASTER_KEY", MASTER_KEY);
    raw.set("SHUTDOWN_GRACE_SECONDS", "5");
    let config = Config::parse(&raw).expect("valid configuration");
    let app = Application::build(config)
        .await
        .expect("application builds");
    options.server = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    let report = tokio::time::timeout(Duration::from_secs(120), load.run(&options))
        .await
        .expect("the run ends in time")
        .expect("the run succeeds");
    let text = report::render_text(&report);
    println!("{text}");

    assert_eq!(report.calls.completed, 3, "{text}");
    assert_eq!(report.calls.failed, 0, "{text}");
    assert_eq!(report.calls.peak_concurrent, 3, "{text}");
    assert!(report.calls.call_seconds >= 9.0, "{text}");
    assert_eq!(report.realtime_sessions, 3, "{text}");
    for (name, d) in [
        ("caller -> AI", &report.caller_to_ai),
        ("AI -> caller", &report.ai_to_caller),
    ] {
        assert_eq!(d.frames_lost, 0, "{name}: {text}");
        assert_eq!(d.frames_unexpected, 0, "{name}: {text}");
        assert!(d.frames_relayed > 0, "{name}: {text}");
        assert_eq!(d.latency.count, d.frames_relayed, "{name}");
        assert!(
            d.latency.p50_ms.is_some() && d.latency.p99_ms.is_some(),
            "{name}"
        );
        assert!(d.latency.max_ms.is_some(), "{name}");
        assert_eq!(
            d.frames_sent,
            d.frames_relayed + d.frames_before_ai_ready + d.frames_at_hang_up,
            "{name}: {text}"
        );
    }
    // Three seconds of 20 ms frames per call, nearly all of them relayed.
    assert!(report.caller_to_ai.frames_sent >= 3 * 145, "{text}");
    assert!(report.caller_to_ai.frames_relayed >= 3 * 100, "{text}");
    // Every call's setup was timed by the carrier (webhook sent → TwiML read).
    assert_eq!(report.call_setup.count, 3, "{text}");
    assert!(report.call_setup.max_ms.is_some(), "{text}");
    assert!(
        text.contains("call setup (incoming-call webhook -> TwiML): "),
        "{text}"
    );
    // The greeting reaches every caller.
    assert_eq!(report.first_audio.count, 3, "{text}");
    assert!(
        report.first_audio.p50_ms.is_some_and(|ms| ms >= 200.0),
        "{text}"
    );
    let server_process = report.server_process.expect("server figures");
    assert!(server_process.cpu_seconds > 0.0, "{text}");
    assert!(server_process.cpu_ms_per_call_second > 0.0, "{text}");
    assert!(server_process.rss_peak_kib > 0, "{text}");
    assert!(report.load_generator_process.is_some());

    let json_path = dir.path().join("report.json");
    stateset_voice::loadtest::write_json(&report, &json_path).expect("write json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("read json"))
            .expect("json report");
    assert_eq!(json["calls"]["completed"], 3);
    assert!(json["caller_to_ai"]["latency"]["p99_ms"].is_number());
    assert!(json["ai_to_caller"]["latency"]["max_ms"].is_number());

    let _ = stop.send(());
    server.await.expect("server task").expect("clean shutdown");
}
