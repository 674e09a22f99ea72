//! `stateset-voice loadtest`: drives N concurrent calls through the carrier simulator against
//! a running server, which is itself wired to the realtime simulator this command starts, and
//! reports what the runtime added.
//!
//! ```text
//! stateset-voice loadtest --server http://127.0.0.1:5050 --admin-key … --calls 100 --duration 60
//! ```
//!
//! In its own process the command starts the realtime model simulator on `--realtime-bind`
//! (`ws://127.0.0.1:5070/v1/realtime` by default, accepting `--realtime-key`) with tagged
//! output audio, and the carrier simulator on a free loopback port. The server under test
//! must be started with `OPENAI_REALTIME_URL=ws://127.0.0.1:5070/v1/realtime` and
//! `OPENAI_API_KEY=<the --realtime-key>`, and its `PUBLIC_BASE_URL` must be `--server`
//! (Twilio signatures are computed over it). Through the admin API the command then creates
//! a fresh tenant with the carrier simulator's account, an approved agent and a live route
//! ([`setup`]), and places `--calls` inbound calls, started evenly over `--ramp` seconds,
//! each a conversation of `--duration` seconds with barge-ins ([`script`]) ending with the
//! caller hanging up.
//!
//! Measurements ([`probe`]): every caller frame and every 20 ms of model audio carries a tag
//! in its payload bytes, which the runtime forwards untouched. Both simulators run in this
//! process and report the instants tags leave and arrive on one clock, so relay latency per
//! direction is an exact difference, and frames relayed and lost are tags sent against tags
//! received. First-audio and turn-response latency are what each caller observed. With
//! `--server-pid` the server's CPU time and peak RSS are read from `/proc` ([`procfs`]).
//!
//! The report ([`report`]) is printed as text and, with `--json FILE`, written as JSON.
//!
//! Faults (see `docs/resilience.md`): `--chaos MODE:PERCENT@SECONDS` asks the server to
//! inject a fault into a share of its live calls and reports every call's fate ([`chaos`]);
//! `--fault kill|term` signals the server once every call is live and measures the recovery
//! after a restart or the drain ([`faults`]); `--soak MINUTES` keeps `--calls` calls going
//! with churn and samples the server's resources ([`soak`]). What the load generator reads
//! back from the server goes through [`reader`].

pub mod chaos;
pub mod faults;
pub mod histogram;
pub mod probe;
pub mod procfs;
pub mod reader;
pub mod report;
pub mod script;
pub mod setup;
pub mod soak;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::sim::carrier::{
    CallSnapshot, CallStatus, CarrierConfig, CarrierSim, CarrierSimHandle, InboundCall, SimError,
    StreamCloser, WebhookKind,
};
use crate::sim::realtime::{
    RealtimeScript, RealtimeSim, RealtimeSimConfig, RealtimeSimError, RealtimeSimHandle,
};

use self::chaos::{CallFate, ChaosReport, ChaosSpec, Injected};
use self::faults::{Drain, ProcessFault, Recovery};
use self::histogram::Histogram;
use self::probe::{MAX_CALLS, MAX_FRAMES_PER_CALL, Probe};
use self::procfs::{Machine, ProcessWatch};
use self::reader::{EventSink, Reader};
use self::report::{BargeIns, CallsReport, Report};
use self::soak::{Sample, SoakReport};

/// What the simulated agent answers every caller turn with (about 3 s of speech).
pub const REPLY: &str = "Sure, I can help with that. Let me check the details for you now.";
/// How long a call may overrun its script before the load generator hangs it up.
const CALL_GRACE: Duration = Duration::from_secs(60);
/// How long to wait after the last call for the model sessions to close.
const SETTLE: Duration = Duration::from_secs(5);
/// Period of the scheduler-lag probe.
const LAG_PERIOD: Duration = Duration::from_millis(10);

/// What can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum LoadTestError {
    /// The options make no sense.
    #[error("invalid option: {0}")]
    InvalidOptions(String),
    /// The realtime simulator could not start.
    #[error(transparent)]
    Realtime(#[from] RealtimeSimError),
    /// The carrier simulator could not start.
    #[error(transparent)]
    Carrier(#[from] SimError),
    /// The server could not be reached.
    #[error("{step}: {source}")]
    Http {
        /// What was being done.
        step: String,
        /// Why it failed.
        source: reqwest::Error,
    },
    /// The server is not ready.
    #[error("the server at {server} is not ready: {detail}")]
    NotReady {
        /// Its base URL.
        server: String,
        /// What it answered.
        detail: String,
    },
    /// An admin request was refused.
    #[error("{step} answered {status}: {body}")]
    Admin {
        /// The request.
        step: String,
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
    /// The JSON report could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How a run is shaped.
#[derive(Clone)]
pub struct Options {
    /// Base URL of the server under test (its `PUBLIC_BASE_URL`).
    pub server: String,
    /// Its `ADMIN_API_KEY`.
    pub admin_key: String,
    /// Concurrent calls.
    pub calls: u32,
    /// Length of every call, from the start of its media stream.
    pub duration: Duration,
    /// Calls start evenly spread over this time.
    pub ramp: Duration,
    /// Where the realtime simulator listens.
    pub realtime_bind: SocketAddr,
    /// The key the realtime simulator accepts (the server's `OPENAI_API_KEY`).
    pub realtime_key: String,
    /// Where the carrier simulator listens (port 0: any; a fixed port lets the server use
    /// it as `TWILIO_API_BASE_URL`, which reconciliation and the drain need).
    pub carrier_bind: SocketAddr,
    /// The simulated model's latency from `response.created` to its first audio.
    pub model_latency: Duration,
    /// The server's process id, to read its CPU time and memory from `/proc`.
    pub server_pid: Option<u32>,
    /// A fault injected through the chaos API.
    pub chaos: Option<ChaosSpec>,
    /// A signal sent to the server once every call is live.
    pub fault: Option<ProcessFault>,
    /// `kill`: how long the recovery is waited for.
    pub recovery_timeout: Duration,
    /// `term`: the file the script writes the server's exit code to.
    pub exit_code_file: Option<PathBuf>,
    /// `term`: the server's database, read once it exited.
    pub database_url: Option<String>,
    /// Churn for this long (calls replaced as they end).
    pub soak: Option<Duration>,
    /// Between two soak samples.
    pub sample_every: Duration,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("server", &self.server)
            .field("admin_key", &"<redacted>")
            .field("calls", &self.calls)
            .field("duration", &self.duration)
            .field("ramp", &self.ramp)
            .field("realtime_bind", &self.realtime_bind)
            .field("model_latency", &self.model_latency)
            .field("server_pid", &self.server_pid)
            .field("chaos", &self.chaos)
            .field("fault", &self.fault)
            .field("soak", &self.soak)
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            server: String::from("http://127.0.0.1:5050"),
            admin_key: String::new(),
            calls: 10,
            duration: Duration::from_secs(60),
            ramp: Duration::from_secs(10),
            realtime_bind: SocketAddr::from(([127, 0, 0, 1], 5070)),
            realtime_key: String::from("sk-loadtest"),
            carrier_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            model_latency: Duration::from_millis(200),
            server_pid: None,
            chaos: None,
            fault: None,
            recovery_timeout: Duration::from_secs(600),
            exit_code_file: None,
            database_url: None,
            soak: None,
            sample_every: Duration::from_secs(30),
        }
    }
}

impl Options {
    fn validate(&self) -> Result<(), LoadTestError> {
        let bad = |m: String| Err(LoadTestError::InvalidOptions(m));
        if self.calls == 0 || self.calls > MAX_CALLS {
            return bad(format!("--calls must be between 1 and {MAX_CALLS}"));
        }
        let max_seconds = u64::from(MAX_FRAMES_PER_CALL) * crate::sim::audio::FRAME_MS / 1000 - 60;
        if self.duration < Duration::from_secs(1) || self.duration.as_secs() > max_seconds {
            return bad(format!(
                "--duration must be between 1 and {max_seconds} seconds"
            ));
        }
        if self.admin_key.is_empty() {
            return bad(String::from("--admin-key (or ADMIN_API_KEY) is required"));
        }
        if url::Url::parse(&self.server).is_err() {
            return bad(format!("--server {:?} is not a URL", self.server));
        }
        if self.fault.is_some() && self.server_pid.is_none() {
            return bad(String::from("--fault needs --server-pid"));
        }
        let shapes = [
            self.chaos.is_some(),
            self.fault.is_some(),
            self.soak.is_some(),
        ];
        if shapes.iter().filter(|s| **s).count() > 1 {
            return bad(String::from(
                "--chaos, --fault and --soak are separate runs: give one",
            ));
        }
        if self.call_indexes().is_none() {
            return bad(format!(
                "--soak: too many calls for one run (at most {MAX_CALLS} in all)"
            ));
        }
        if self.sample_every < Duration::from_secs(1) {
            return bad(String::from("--sample-every must be at least 1 second"));
        }
        Ok(())
    }

    /// How many calls the run may place (`None`: more than can be tagged).
    pub fn call_indexes(&self) -> Option<u32> {
        let n = match self.soak {
            None => u64::from(self.calls),
            Some(soak) => {
                let per_slot = soak.as_secs() / self.duration.as_secs().max(1) + 2;
                u64::from(self.calls) * per_slot
            }
        };
        u32::try_from(n).ok().filter(|n| *n <= MAX_CALLS)
    }
}

/// The simulators of a run (dropping it stops them).
pub struct LoadTest {
    realtime: RealtimeSimHandle,
    carrier: Arc<CarrierSimHandle>,
    probe: Arc<Probe>,
    account_sid: String,
    auth_token: String,
}

impl std::fmt::Debug for LoadTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadTest")
            .field("realtime", &self.realtime.url())
            .field("carrier", &self.carrier.base_url())
            .finish_non_exhaustive()
    }
}

/// What happened to one call.
#[derive(Debug, Clone, Default)]
struct CallOutcome {
    failure: Option<String>,
    connected_seconds: f64,
    first_audio_ms: Option<u64>,
    /// The call's first webhook (`incoming-call`) answered with TwiML, as the carrier timed it.
    setup_ms: Option<u64>,
    response_ms: Vec<u64>,
    clears: u64,
    barge_ins_planned: u32,
}

/// Why a call that ended did not succeed, if it did not.
fn failure_of(call: &CallSnapshot) -> Option<String> {
    if call.status != CallStatus::Completed {
        return Some(format!("status_{}", call.status));
    }
    if call.media.streams_opened == 0 {
        let rejected = call
            .events
            .iter()
            .any(|e| matches!(e, crate::sim::carrier::CallEvent::StreamRejected { .. }));
        return Some(String::from(if rejected {
            "stream_rejected"
        } else {
            "no_stream"
        }));
    }
    if call.stream_closed_by() != Some(StreamCloser::Caller) {
        return Some(String::from("stream_closed_by_server"));
    }
    if call.media.first_audio_ms.is_none() {
        return Some(String::from("no_ai_audio"));
    }
    None
}

fn outcome_of(call: &CallSnapshot) -> CallOutcome {
    let connected_seconds = match (call.answered_at, call.ended_at) {
        (Some(a), Some(e)) => (e - a).num_milliseconds().max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    CallOutcome {
        failure: failure_of(call),
        connected_seconds,
        first_audio_ms: call.media.first_audio_ms,
        setup_ms: call
            .webhooks_of(WebhookKind::Voice)
            .first()
            .filter(|w| w.status == Some(200))
            .and_then(|w| w.elapsed_ms),
        response_ms: call.media.response_latencies_ms.clone(),
        clears: call.media.clears,
        barge_ins_planned: 0,
    }
}

/// What a run collected, for [`LoadTest::report`].
struct Measured<'a> {
    /// Machine CPU times at the start and the end.
    cpu: Option<(procfs::CpuTimes, procfs::CpuTimes)>,
    ticks: u64,
    outcomes: Vec<CallOutcome>,
    live: &'a Live,
    wall_seconds: f64,
    watches: Option<Watches>,
    lag: &'a Histogram,
    phase: Phase,
}

/// What the fault phase of a run measured.
#[derive(Debug, Default)]
struct Phase {
    chaos: Option<ChaosPhase>,
    recovery: Option<Recovery>,
    drain: Option<Drain>,
    baseline: Option<Sample>,
    samples: Vec<Sample>,
    after: Option<Sample>,
}

/// What the chaos request did.
#[derive(Debug)]
struct ChaosPhase {
    spec: ChaosSpec,
    injected: Vec<Injected>,
    after: Duration,
    /// Fault → recorded outcome of each injected call (same order).
    recorded: Vec<Option<Duration>>,
}

/// The server's and this process's watches.
type Watches = Arc<(Option<ProcessWatch>, Option<ProcessWatch>)>;

/// Counters the progress line and the sampler read.
#[derive(Debug, Default)]
struct Live {
    in_progress: AtomicU64,
    peak: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    /// Every call placed: index → `CA…`.
    sids: std::sync::Mutex<BTreeMap<u32, String>>,
}

impl Live {
    fn sids(&self) -> BTreeMap<u32, String> {
        self.sids.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl LoadTest {
    /// Starts both simulators (the realtime one on `options.realtime_bind`). The server
    /// under test must use [`LoadTest::realtime_url`] and `options.realtime_key`.
    pub async fn start(options: &Options) -> Result<Self, LoadTestError> {
        let probe = Arc::new(Probe::new(options.call_indexes().unwrap_or(MAX_CALLS)));
        let script = RealtimeScript {
            default_reply: String::from(REPLY),
            default_user: String::from("(load-test caller)"),
            ..RealtimeScript::default()
        };
        let realtime = RealtimeSim::start(RealtimeSimConfig {
            bind: options.realtime_bind,
            tag_audio: true,
            first_audio_latency: options.model_latency,
            tag_observer: Some(probe.clone()),
            ..RealtimeSimConfig::with_api_key(options.realtime_key.clone()).with_script(script)
        })
        .await?;
        let account_sid = format!("AC{}", uuid::Uuid::new_v4().simple());
        let auth_token = uuid::Uuid::new_v4().simple().to_string();
        let carrier = CarrierSim::start(CarrierConfig {
            media_observer: Some(probe.clone()),
            ws_connect_timeout: Duration::from_secs(30),
            webhook_timeout: Duration::from_secs(30),
            bind: options.carrier_bind,
            ..CarrierConfig::with_account(account_sid.clone(), auth_token.clone())
        })
        .await?;
        Ok(Self {
            realtime,
            carrier: Arc::new(carrier),
            probe,
            account_sid,
            auth_token,
        })
    }

    /// `ws://…/v1/realtime` of the realtime simulator (the server's `OPENAI_REALTIME_URL`).
    pub fn realtime_url(&self) -> String {
        self.realtime.url()
    }

    /// Provisions, runs every call to its end, and reports. `options.calls` must not exceed
    /// the number given to [`LoadTest::start`].
    pub async fn run(&self, options: &Options) -> Result<Report, LoadTestError> {
        options.validate()?;
        let server = options.server.trim_end_matches('/').to_owned();
        crate::startup::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| LoadTestError::Http {
                step: String::from("build the HTTP client"),
                source,
            })?;
        check_ready(&client, &server).await?;
        let admin = setup::Admin {
            client: &client,
            server: &server,
            key: &options.admin_key,
        };
        let provisioned = admin
            .provision(
                options.calls,
                options.duration.as_secs(),
                &self.account_sid,
                &self.auth_token,
            )
            .await?;
        tracing::info!(tenant = %provisioned.tenant_id, number = %provisioned.number, limit = provisioned.limit, "load-test tenant provisioned");

        let ticks = procfs::clock_ticks_per_second();
        let server_watch = options
            .server_pid
            .and_then(|pid| ProcessWatch::start(pid, ticks));
        if let (Some(pid), None) = (options.server_pid, &server_watch) {
            tracing::warn!(
                pid,
                "cannot read /proc/{pid}: server CPU and memory not measured"
            );
        }
        let self_watch = ProcessWatch::start(std::process::id(), ticks);
        let cpu_start = procfs::cpu_times();
        let live = Arc::new(Live::default());
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let lag = Arc::new(Histogram::new());
        let lag_probe = tokio::spawn(lag_loop(lag.clone(), stop.clone()));
        let sampler = tokio::spawn(sample_loop(
            Arc::new((server_watch, self_watch)),
            live.clone(),
            stop.clone(),
            started,
        ));

        let reader = if options.chaos.is_some() || options.fault.is_some() {
            Some(Reader::create(&admin, &provisioned.tenant_id).await?)
        } else {
            None
        };
        let events = if options.fault == Some(ProcessFault::Kill) {
            let sink = EventSink::start().await?;
            sink.register(&admin, &provisioned.tenant_id).await?;
            Some(sink)
        } else {
            None
        };

        let soak_end = options.soak.map(|soak| started + soak);
        let next_index = Arc::new(AtomicU64::new(u64::from(options.calls)));
        let mut calls = JoinSet::new();
        for slot in 0..options.calls {
            let at = started
                + options
                    .ramp
                    .mul_f64(f64::from(slot) / f64::from(options.calls));
            let carrier = self.carrier.clone();
            let live = live.clone();
            let next_index = next_index.clone();
            let call = InboundCall {
                account_sid: self.account_sid.clone(),
                from: String::new(),
                to: provisioned.number.clone(),
                voice_url: format!("{server}/api/v1/incoming-call"),
                status_callback: Some(format!("{server}/api/v1/call-status")),
                status_callback_events: Vec::new(),
                script: Default::default(),
            };
            let length = options.duration;
            calls.spawn(async move {
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                let mut outcomes = Vec::new();
                let mut index = slot;
                loop {
                    let call = InboundCall {
                        from: format!("+1556{index:07}"),
                        ..call.clone()
                    };
                    outcomes.push(run_call(&carrier, call, index, length, &live).await);
                    match soak_end {
                        Some(end) if Instant::now() < end => {
                            let n = next_index.fetch_add(1, Ordering::Relaxed);
                            match u32::try_from(n) {
                                Ok(n) if n < MAX_CALLS => index = n,
                                _ => break,
                            }
                        }
                        _ => break,
                    }
                }
                outcomes
            });
        }
        let stop_phase = Arc::new(AtomicBool::new(false));
        let collect = async {
            let mut outcomes = Vec::with_capacity(options.calls as usize);
            while let Some(joined) = calls.join_next().await {
                match joined {
                    Ok(o) => outcomes.extend(o),
                    Err(e) => outcomes.push(CallOutcome {
                        failure: Some(format!("load generator task failed: {e}")),
                        ..CallOutcome::default()
                    }),
                }
            }
            stop_phase.store(true, Ordering::SeqCst);
            (outcomes, started.elapsed().as_secs_f64())
        };
        let phase = self.phase(
            options,
            &client,
            &server,
            &admin,
            reader.as_ref(),
            events.as_deref(),
            &provisioned.tenant_id,
            &live,
            started,
            &stop_phase,
        );
        let ((outcomes, wall_seconds), phase) = tokio::join!(collect, phase);
        let sessions = self.realtime.sessions().len();
        let settle_until = Instant::now() + SETTLE;
        while self.probe.sessions_ended() < sessions && Instant::now() < settle_until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, Ordering::SeqCst);
        let watches = sampler.await.ok();
        let _ = lag_probe.await;
        let cpu_end = procfs::cpu_times();
        let measured = Measured {
            cpu: cpu_start.zip(cpu_end),
            ticks,
            outcomes,
            live: &live,
            wall_seconds,
            watches,
            lag: &lag,
            phase,
        };
        Ok(self.report(options, &server, measured))
    }

    /// The fault phase, alongside the calls: the chaos request, the process fault, or the
    /// soak samples (until `stop` is set when every call has ended).
    #[allow(clippy::too_many_arguments)]
    async fn phase(
        &self,
        options: &Options,
        client: &reqwest::Client,
        server: &str,
        admin: &setup::Admin<'_>,
        reader: Option<&Reader<'_>>,
        events: Option<&EventSink>,
        tenant_id: &str,
        live: &Live,
        started: Instant,
        stop: &AtomicBool,
    ) -> Phase {
        let mut phase = Phase::default();
        if let (Some(spec), Some(reader)) = (options.chaos, reader) {
            tokio::time::sleep_until(tokio::time::Instant::from_std(started + spec.at)).await;
            let streams: BTreeMap<String, u32> = self
                .carrier
                .calls()
                .into_iter()
                .map(|c| (c.sid, c.media.streams_opened))
                .collect();
            match chaos::inject(admin, &spec, tenant_id).await {
                Ok(injected) => {
                    let fault = Instant::now();
                    let recorded = futures::future::join_all(injected.iter().map(|i| {
                        let at_fault = streams.get(&i.call_sid).copied().unwrap_or(1);
                        chaos::wait_recorded(reader, &self.carrier, i, at_fault, fault)
                    }))
                    .await;
                    phase.chaos = Some(ChaosPhase {
                        spec,
                        injected,
                        after: fault.saturating_duration_since(started),
                        recorded,
                    });
                }
                Err(error) => eprintln!("loadtest: chaos request failed: {error}"),
            }
        }
        if let (Some(fault), Some(pid)) = (options.fault, options.server_pid) {
            let deadline = started + options.ramp + Duration::from_secs(120);
            let expected = options.calls as usize;
            let all = faults::wait_all_live(
                &self.carrier,
                expected,
                || live.sids().into_values().collect(),
                deadline,
            )
            .await;
            let live_now = live
                .sids()
                .values()
                .filter(|sid| self.carrier.call(sid).is_some_and(|c| faults::is_live(&c)))
                .count() as u64;
            if !all {
                eprintln!("loadtest: only {live_now} of {expected} calls live; signalling anyway");
            }
            eprintln!(
                "loadtest: {live_now} calls live: sending {fault:?} to the server (pid {pid})"
            );
            if let Err(error) = faults::signal(pid, fault) {
                eprintln!("loadtest: {error}");
                return phase;
            }
            let at = Instant::now();
            match fault {
                ProcessFault::Kill => {
                    // Readiness is polled only once the killed process is gone.
                    let _ = faults::wait_exit(pid, at, Duration::from_secs(10)).await;
                    if let (Some(reader), Some(events)) = (reader, events) {
                        phase.recovery = Some(
                            faults::measure_recovery(
                                client,
                                server,
                                reader,
                                events,
                                live_now,
                                at,
                                options.recovery_timeout,
                            )
                            .await,
                        );
                    }
                }
                ProcessFault::Term => {
                    let exited = faults::wait_exit(pid, at, options.recovery_timeout).await;
                    let exit_code = match &options.exit_code_file {
                        Some(path) if exited.is_some() => {
                            faults::read_exit_code(path, Duration::from_secs(30)).await
                        }
                        _ => None,
                    };
                    let (open, records_error) = match (&options.database_url, exited) {
                        (Some(url), Some(_)) => match faults::open_records(url, tenant_id).await {
                            Ok(counts) => (Some(counts), None),
                            Err(e) => (None, Some(e)),
                        },
                        (None, _) => (None, Some(String::from("no --database-url"))),
                        (_, None) => (None, Some(String::from("the server did not exit"))),
                    };
                    phase.drain = Some(Drain {
                        calls_live_at_fault: live_now,
                        exited_after_seconds: exited.map(|d| d.as_secs_f64()),
                        exit_code,
                        callers: faults::Callers::default(),
                        records_left_open: open.map(|o| o.0),
                        sessions_left_active: open.map(|o| o.1),
                        records_error,
                    });
                }
            }
        }
        if let Some(soak) = options.soak {
            let take = || {
                soak::sample(
                    client,
                    server,
                    options.server_pid,
                    started,
                    live.in_progress.load(Ordering::Relaxed),
                    live.completed.load(Ordering::Relaxed) + live.failed.load(Ordering::Relaxed),
                )
            };
            // Before the calls, then from the end of the ramp every `sample_every` while the
            // churn goes on, and once every call has ended.
            phase.baseline = Some(take().await);
            let mut next = started + options.ramp + Duration::from_secs(5);
            let churn_end = started + soak;
            while !stop.load(Ordering::SeqCst) {
                let now = Instant::now();
                if now >= next && now < churn_end {
                    phase.samples.push(take().await);
                    next += options.sample_every;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            phase.after = Some(take().await);
        }
        phase
    }

    /// The chaos report from the phase and the calls' final snapshots.
    fn chaos_report(&self, live: &Live, c: ChaosPhase) -> ChaosReport {
        let sids = live.sids();
        let touched_sids: BTreeMap<&str, Option<Duration>> = c
            .injected
            .iter()
            .zip(&c.recorded)
            .map(|(i, r)| (i.call_sid.as_str(), *r))
            .collect();
        let mut touched = HashSet::new();
        let fates = sids
            .iter()
            .filter_map(|(index, sid)| {
                let snapshot = self.carrier.call(sid)?;
                let recorded = touched_sids.get(sid.as_str());
                if recorded.is_some() {
                    touched.insert(*index);
                }
                let fate = chaos::classify(&snapshot);
                Some(CallFate {
                    detail: (fate == chaos::Fate::Failed).then(|| chaos::failure_detail(&snapshot)),
                    call_sid: sid.clone(),
                    index: *index,
                    touched: recorded.is_some(),
                    fate,
                    streams: snapshot.media.streams_opened,
                    fault_to_outcome_ms: recorded
                        .copied()
                        .flatten()
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                })
            })
            .collect();
        let loss = chaos::untouched_loss(&self.probe.lost_by_call(), &touched);
        ChaosReport::new(c.spec, c.injected.len() as u64, c.after, fates, loss)
    }

    fn report(&self, options: &Options, server: &str, measured: Measured<'_>) -> Report {
        let Measured {
            cpu,
            ticks,
            outcomes,
            live,
            wall_seconds,
            watches,
            lag,
            phase,
        } = measured;
        let first_audio = Histogram::new();
        let setup = Histogram::new();
        let turn_response = Histogram::new();
        let mut failures: BTreeMap<String, u64> = BTreeMap::new();
        let mut call_seconds = 0.0;
        let mut attempted = 0_u64;
        let mut clears = 0_u64;
        for o in &outcomes {
            call_seconds += o.connected_seconds;
            attempted += u64::from(o.barge_ins_planned);
            clears += o.clears;
            if let Some(ms) = o.first_audio_ms {
                first_audio.record_ms(ms);
            }
            if let Some(ms) = o.setup_ms {
                setup.record_ms(ms);
            }
            for ms in &o.response_ms {
                turn_response.record_ms(*ms);
            }
            if let Some(reason) = &o.failure {
                *failures.entry(reason.clone()).or_default() += 1;
            }
        }
        let failed: u64 = failures.values().sum();
        let sessions = self.realtime.sessions();
        let (caller_to_ai, ai_to_caller) = self.probe.report();
        let calls = u64::from(options.calls);
        let (server_process, load_generator_process) = match watches.as_deref() {
            Some((server, own)) => (
                server
                    .as_ref()
                    .and_then(|w| w.finish(wall_seconds, calls, call_seconds)),
                own.as_ref()
                    .and_then(|w| w.finish(wall_seconds, calls, call_seconds)),
            ),
            None => (None, None),
        };
        let measured_seconds = server_process.map_or(0.0, |p| p.cpu_seconds)
            + load_generator_process.map_or(0.0, |p| p.cpu_seconds);
        let machine_cpu =
            cpu.map(|(start, end)| procfs::machine_cpu(start, end, ticks, measured_seconds));
        Report {
            server: server.to_owned(),
            machine: Machine::detect(),
            calls_requested: options.calls,
            call_length_seconds: options.duration.as_secs_f64(),
            ramp_seconds: options.ramp.as_secs_f64(),
            wall_seconds,
            calls: CallsReport {
                completed: outcomes.len() as u64 - failed,
                failed,
                failures,
                peak_concurrent: live.peak.load(Ordering::Relaxed),
                call_seconds,
            },
            caller_to_ai,
            ai_to_caller,
            first_audio: first_audio.summary(),
            call_setup: setup.summary(),
            model_latency_ms: u64::try_from(options.model_latency.as_millis()).unwrap_or(0),
            turn_response: turn_response.summary(),
            barge_ins: BargeIns {
                attempted,
                clears_received: clears,
                responses_cancelled: sessions
                    .iter()
                    .map(|s| u64::from(s.responses_cancelled))
                    .sum(),
                truncations: sessions.iter().map(|s| s.truncations.len() as u64).sum(),
            },
            realtime_sessions: sessions.len() as u64,
            load_generator_lag: lag.summary(),
            server_process,
            load_generator_process,
            machine_cpu,
            chaos: phase.chaos.map(|c| self.chaos_report(live, c)),
            recovery: phase.recovery,
            drain: phase.drain.map(|mut d| {
                let snapshots: Vec<CallSnapshot> = live
                    .sids()
                    .values()
                    .filter_map(|sid| self.carrier.call(sid))
                    .collect();
                d.callers = faults::callers(&snapshots);
                d
            }),
            soak: options.soak.map(|soak| SoakReport {
                minutes: soak.as_secs_f64() / 60.0,
                calls_placed: outcomes.len() as u64,
                tokio_tasks: "not available (tokio runtime metrics need tokio_unstable); see calls_active and threads",
                baseline: phase.baseline,
                start: phase.samples.first().cloned(),
                end: phase.samples.last().cloned(),
                after: phase.after,
                series: phase.samples,
            }),
        }
    }
}

/// `GET /health/ready` must answer 200.
async fn check_ready(client: &reqwest::Client, server: &str) -> Result<(), LoadTestError> {
    let response = client
        .get(format!("{server}/health/ready"))
        .send()
        .await
        .map_err(|source| LoadTestError::Http {
            step: format!("GET {server}/health/ready"),
            source,
        })?;
    if !response.status().is_success() {
        return Err(LoadTestError::NotReady {
            server: server.to_owned(),
            detail: format!("/health/ready answered {}", response.status()),
        });
    }
    Ok(())
}

/// Places call `index`, waits for it to end (hanging it up if it overruns), and classifies
/// it.
async fn run_call(
    carrier: &CarrierSimHandle,
    mut call: InboundCall,
    index: u32,
    length: Duration,
    live: &Live,
) -> CallOutcome {
    let (script, plan) = script::caller_script(index, length);
    call.script = script;
    let in_progress = live.in_progress.fetch_add(1, Ordering::Relaxed) + 1;
    live.peak.fetch_max(in_progress, Ordering::Relaxed);
    let mut outcome = match carrier.place_inbound_call(call) {
        Err(error) => CallOutcome {
            failure: Some(format!("not_placed: {error}")),
            ..CallOutcome::default()
        },
        Ok(sid) => {
            live.sids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(index, sid.clone());
            // Ringing, TwiML and the stream's handshake come before the script's clock.
            let limit = length + CALL_GRACE;
            match tokio::time::timeout(limit, carrier.wait_ended(&sid)).await {
                Ok(snapshot) => outcome_of(&snapshot),
                Err(_) => {
                    let _ = carrier.hangup(&sid);
                    let ended =
                        tokio::time::timeout(Duration::from_secs(20), carrier.wait_ended(&sid))
                            .await;
                    let mut outcome = ended.map(|s| outcome_of(&s)).unwrap_or_default();
                    outcome.failure = Some(String::from("overran"));
                    outcome
                }
            }
        }
    };
    outcome.barge_ins_planned = plan.barge_ins;
    live.in_progress.fetch_sub(1, Ordering::Relaxed);
    if outcome.failure.is_some() {
        live.failed.fetch_add(1, Ordering::Relaxed);
    } else {
        live.completed.fetch_add(1, Ordering::Relaxed);
    }
    outcome
}

/// Measures how late this process's scheduler wakes a [`LAG_PERIOD`] timer, until `stop`.
async fn lag_loop(lag: Arc<Histogram>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let before = tokio::time::Instant::now();
        tokio::time::sleep(LAG_PERIOD).await;
        lag.record(before.elapsed().saturating_sub(LAG_PERIOD));
    }
}

/// Samples memory every second and prints progress every ten, until `stop`; returns the
/// watches for the final figures.
async fn sample_loop(
    watches: Watches,
    live: Arc<Live>,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> Watches {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0_u64;
    while !stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        ticks += 1;
        if let Some(w) = &watches.0 {
            w.sample();
        }
        if let Some(w) = &watches.1 {
            w.sample();
        }
        if ticks.is_multiple_of(10) {
            eprintln!(
                "loadtest: {:>4.0} s: {} calls in progress, {} completed, {} failed",
                started.elapsed().as_secs_f64(),
                live.in_progress.load(Ordering::Relaxed),
                live.completed.load(Ordering::Relaxed),
                live.failed.load(Ordering::Relaxed),
            );
        }
    }
    watches
}

/// Writes the JSON report.
pub fn write_json(report: &Report, path: &std::path::Path) -> Result<(), LoadTestError> {
    let text = serde_json::to_string_pretty(report).unwrap_or_else(|_| String::from("{}"));
    std::fs::write(path, text + "\n").map_err(|source| LoadTestError::Write {
        path: path.to_owned(),
        source,
    })
}

/// `stateset-voice loadtest` arguments.
#[derive(Clone, clap::Args)]
pub struct LoadtestArgs {
    /// Base URL of the server under test (must be its PUBLIC_BASE_URL).
    #[arg(long, default_value = "http://127.0.0.1:5050")]
    pub server: String,
    /// The server's ADMIN_API_KEY.
    #[arg(long, env = "ADMIN_API_KEY", hide_env_values = true)]
    pub admin_key: String,
    /// Concurrent calls.
    #[arg(long, default_value_t = 10)]
    pub calls: u32,
    /// Length of every call, seconds.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Calls start evenly spread over this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub ramp: f64,
    /// Where the realtime simulator listens (the server's OPENAI_REALTIME_URL is
    /// ws://THIS/v1/realtime).
    #[arg(long, default_value = "127.0.0.1:5070")]
    pub realtime_bind: SocketAddr,
    /// The key the realtime simulator accepts (the server's OPENAI_API_KEY).
    #[arg(long, default_value = "sk-loadtest")]
    pub realtime_key: String,
    /// Where the carrier simulator listens (the server's TWILIO_API_BASE_URL is
    /// http://THIS; port 0: any free port, when the server never calls the carrier's REST
    /// API).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub carrier_bind: SocketAddr,
    /// The simulated model's latency to first audio, ms.
    #[arg(long, default_value_t = 200)]
    pub model_latency_ms: u64,
    /// The server's process id: its CPU time and memory are read from /proc/PID.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// MODE:PERCENT@SECONDS (MODE kill, panic, ai_reset or twilio_reset): at SECONDS after
    /// the start, the server (CHAOS_HOOKS=true) injects MODE into PERCENT % of its live calls.
    #[arg(long)]
    pub chaos: Option<ChaosSpec>,
    /// Once every call is live, send the server (--server-pid) SIGKILL (`kill`: measure the
    /// recovery once it is restarted) or SIGTERM (`term`: measure the drain).
    #[arg(long, value_enum, requires = "server_pid")]
    pub fault: Option<ProcessFault>,
    /// `--fault`: how long the recovery or the exit is waited for, seconds.
    #[arg(long, default_value_t = 600)]
    pub recovery_timeout: u64,
    /// `--fault term`: the file the server's exit code is written to by whoever waits for it.
    #[arg(long)]
    pub exit_code_file: Option<PathBuf>,
    /// `--fault term`: the server's DATABASE_URL, read after it exited (records left open).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Keep --calls calls going for this many minutes, each ended call replaced by a new one.
    #[arg(long)]
    pub soak: Option<f64>,
    /// `--soak`: seconds between two samples of the server.
    #[arg(long, default_value_t = 30)]
    pub sample_every: u64,
}

impl LoadtestArgs {
    /// The run's options.
    pub fn options(&self) -> Options {
        Options {
            server: self.server.clone(),
            admin_key: self.admin_key.clone(),
            calls: self.calls,
            duration: Duration::from_secs(self.duration),
            ramp: Duration::try_from_secs_f64(self.ramp.max(0.0)).unwrap_or_default(),
            realtime_bind: self.realtime_bind,
            realtime_key: self.realtime_key.clone(),
            carrier_bind: self.carrier_bind,
            model_latency: Duration::from_millis(self.model_latency_ms),
            server_pid: self.server_pid,
            chaos: self.chaos,
            fault: self.fault,
            recovery_timeout: Duration::from_secs(self.recovery_timeout),
            exit_code_file: self.exit_code_file.clone(),
            database_url: self.database_url.clone(),
            soak: self
                .soak
                .and_then(|m| Duration::try_from_secs_f64(m.max(0.0) * 60.0).ok()),
            sample_every: Duration::from_secs(self.sample_every),
        }
    }
}

/// Whether the run met what it measures: without a fault, every call completed without a
/// lost frame; with one, what `docs/resilience.md` states must hold.
pub fn clean(report: &Report) -> bool {
    let frames = report.caller_to_ai.frames_lost == 0 && report.ai_to_caller.frames_lost == 0;
    if let Some(c) = &report.chaos {
        return c.untouched_frames_lost == chaos::UntouchedLoss::default()
            && c.touched.failed == 0
            && c.outcome_not_recorded == 0
            && c.untouched.resumed + c.untouched.fallback + c.untouched.failed == 0;
    }
    if let Some(k) = &report.recovery {
        return k.recovered && k.completion_events.more == 0;
    }
    if let Some(d) = &report.drain {
        return d.callers.application_error == 0
            && d.records_left_open == Some(0)
            && d.exit_code == Some(0);
    }
    report.calls.failed == 0 && frames
}

/// Runs the command: exit 0 when every call completed without a lost frame, 2 when the
/// report shows failed calls or lost frames, 1 when the run could not happen.
pub fn main(args: LoadtestArgs) -> ExitCode {
    crate::telemetry::init_logging(crate::config::LogFormat::Text, "warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("stateset-voice: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = args.options();
    let result = runtime.block_on(async {
        options.validate()?;
        let test = LoadTest::start(&options).await?;
        eprintln!(
            "loadtest: realtime simulator at {} (key {}); the server must use it as OPENAI_REALTIME_URL",
            test.realtime_url(),
            options.realtime_key
        );
        let report = test.run(&options).await?;
        if let Some(path) = &args.json {
            write_json(&report, path)?;
        }
        Ok::<_, LoadTestError>(report)
    });
    match result {
        Ok(report) => {
            print!("{}", report::render_text(&report));
            if report.realtime_sessions == 0 {
                eprintln!(
                    "loadtest: the server opened no model session: is it started with OPENAI_REALTIME_URL={} and OPENAI_API_KEY={}?",
                    format_args!("ws://{}/v1/realtime", options.realtime_bind),
                    options.realtime_key
                );
            }
            if clean(&report) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(error) => {
            eprintln!("stateset-voice loadtest: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_validated() {
        let ok = Options {
            admin_key: "k".repeat(20),
            ..Options::default()
        };
        assert!(ok.validate().is_ok());
        for bad in [
            Options {
                calls: 0,
                ..ok.clone()
            },
            Options {
                calls: MAX_CALLS + 1,
                ..ok.clone()
            },
            Options {
                duration: Duration::ZERO,
                ..ok.clone()
            },
            Options {
                duration: Duration::from_secs(100_000),
                ..ok.clone()
            },
            Options {
                admin_key: String::new(),
                ..ok.clone()
            },
            Options {
                server: String::from("not a url"),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
