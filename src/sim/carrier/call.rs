//! One task per call: the outbound or inbound lifecycle (status callbacks, ringing, callee
//! behaviour, answering-machine detection) and the TwiML executor, interruptible at every
//! wait by REST updates.
//!
//! Execution is a small state machine over [`Flow`]: run a document, fetch the next one
//! (redirects, `<Connect action>`, `<Dial action>`), or end with a status. A REST update
//! arrives as a [`Control`] and replaces whatever runs: as on Twilio, the interrupted verb's
//! `action` is not requested.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::twilio::twiml::{Conference, Dial, Gather, GatherChild, Response, Verb};

use super::caller::{CallerCursor, CallerScript};
use super::conference::{self, ENDED, STARTED};
use super::dial;
use super::media::StreamEnd;
use super::shared::{Shared, lock};
use super::state::{
    CallEvent, CallSnapshot, CallStatus, MachineRecording, StatusCallbackRecord, WebhookKind,
    WebhookRecord,
};
use super::webhook::{self, CallIdentity, resolve, rfc2822_now, round_secs};
use actors::telephony::amd::AnsweredBy;

/// Where replacement TwiML comes from.
#[derive(Debug, Clone)]
pub(crate) enum TwimlSource {
    /// Inline document (already validated).
    Inline(String),
    /// Fetched from a URL.
    Url {
        /// The URL.
        url: String,
        /// `GET` or `POST`.
        method: String,
    },
}

/// An interrupt from the REST API.
#[derive(Debug, Clone)]
pub(crate) enum Control {
    /// Stop the current TwiML and run this instead.
    Redirect(TwimlSource),
    /// `Status=completed`: hang up now.
    Hangup,
    /// `Status=canceled`: end a call that is not answered yet (ignored once answered).
    Cancel,
    /// The network drops the media websocket (no `stop`, no close frame); the call goes on
    /// to the `<Connect action>`. Ignored when no stream is open.
    ResetStream,
}

/// Call-progress events a status callback can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressEvent {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

/// `StatusCallback` settings of a call.
#[derive(Debug, Clone)]
pub(crate) struct StatusCallbackSpec {
    pub url: String,
    pub method: String,
    pub events: Vec<ProgressEvent>,
}

impl StatusCallbackSpec {
    /// From the URL, method and the requested event names (repeated values or space
    /// separated); unknown names are ignored and no names means only `completed`.
    pub fn new(url: String, method: Option<String>, names: &[String]) -> Self {
        let mut events: Vec<ProgressEvent> = names
            .iter()
            .flat_map(|n| n.split([' ', ',']))
            .filter_map(|n| match n.trim().to_ascii_lowercase().as_str() {
                "initiated" => Some(ProgressEvent::Initiated),
                "ringing" => Some(ProgressEvent::Ringing),
                "answered" => Some(ProgressEvent::Answered),
                "completed" => Some(ProgressEvent::Completed),
                _ => None,
            })
            .collect();
        if events.is_empty() {
            events.push(ProgressEvent::Completed);
        }
        Self {
            url,
            method: method.unwrap_or_else(|| "POST".into()),
            events,
        }
    }
}

/// Answering-machine detection requested on an outbound call.
#[derive(Debug, Clone)]
pub(crate) struct AmdSpec {
    /// `MachineDetection=DetectMessageEnd` (else `Enable`).
    pub detect_message_end: bool,
    /// `MachineDetectionTimeout`.
    pub timeout: Option<Duration>,
    /// `AsyncAmd=true`.
    pub is_async: bool,
    /// `AsyncAmdStatusCallback` and its method.
    pub callback: Option<(String, String)>,
}

/// An outbound call as created through `Calls.json`.
#[derive(Debug, Clone)]
pub(crate) struct OutboundSpec {
    pub source: TwimlSource,
    pub timeout: Duration,
    pub amd: Option<AmdSpec>,
}

/// What runs next.
#[derive(Debug)]
pub(crate) enum Flow {
    /// Run a document; `base` is the URL it came from (for relative URLs).
    Run {
        doc: Response,
        base: Option<String>,
        source: String,
    },
    /// Fetch a document.
    Fetch {
        kind: WebhookKind,
        url: String,
        method: String,
        extra: Vec<(String, String)>,
    },
    /// A REST update interrupted.
    Interrupted(Control),
    /// The call ends.
    End(CallStatus),
}

/// The task of one call.
pub(crate) struct CallRunner {
    pub(super) shared: Arc<Shared>,
    pub(super) id: CallIdentity,
    pub(super) token: String,
    pub(super) state: Arc<watch::Sender<CallSnapshot>>,
    pub(super) control: mpsc::UnboundedReceiver<Control>,
    pub(super) status_callback: Option<StatusCallbackSpec>,
    pub(super) sequence: u32,
    pub(super) answered: Option<Instant>,
    pub(super) amd_on: bool,
    pub(super) amd_task: Option<JoinHandle<()>>,
    /// When an answering machine's greeting ends (a machine answered).
    pub(super) machine_beep: Option<Instant>,
    pub(super) script: CallerScript,
    pub(super) cursor: CallerCursor,
}

impl CallRunner {
    /// A runner for a registered call.
    pub fn new(
        shared: Arc<Shared>,
        id: CallIdentity,
        token: String,
        state: Arc<watch::Sender<CallSnapshot>>,
        control: mpsc::UnboundedReceiver<Control>,
        status_callback: Option<StatusCallbackSpec>,
        script: CallerScript,
    ) -> Self {
        let cursor = CallerCursor::new(&script);
        Self {
            shared,
            id,
            token,
            state,
            control,
            status_callback,
            sequence: 0,
            answered: None,
            amd_on: false,
            amd_task: None,
            machine_beep: None,
            script,
            cursor,
        }
    }

    /// Updates the snapshot.
    pub(super) fn update(&self, f: impl FnOnce(&mut CallSnapshot)) {
        self.state.send_modify(f);
    }

    /// Appends an event.
    pub(super) fn event(&self, event: CallEvent) {
        self.update(|s| s.events.push(event));
    }

    fn status(&self) -> CallStatus {
        self.state.borrow().status
    }

    /// Runs `fut` unless a REST update arrives first. `Cancel` is ignored once answered.
    pub(super) async fn guard<F: std::future::Future>(
        &mut self,
        fut: F,
    ) -> Result<F::Output, Control> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                Some(control) = self.control.recv() => {
                    if matches!(control, Control::Cancel) && self.answered.is_some()
                        || matches!(control, Control::ResetStream)
                    {
                        continue;
                    }
                    return Err(control);
                }
                out = &mut fut => return Ok(out),
            }
        }
    }

    /// Sends a signed webhook and records it. The future borrows nothing from the runner,
    /// so it can run under [`CallRunner::guard`].
    pub(super) fn webhook(
        &self,
        kind: WebhookKind,
        method: &str,
        url: &str,
        params: Vec<(String, String)>,
    ) -> impl std::future::Future<Output = (WebhookRecord, Option<webhook::Reply>)> + Send + 'static
    {
        let http = self.shared.http.clone();
        let token = self.token.clone();
        let state = self.state.clone();
        let sid = self.id.sid.clone();
        let (method, url) = (method.to_owned(), url.to_owned());
        async move {
            let (record, reply) = webhook::send(&http, &token, kind, &method, &url, params).await;
            tracing::debug!(call = %sid, kind = ?kind, url, status = ?record.status, "webhook sent");
            state.send_modify(|s| s.events.push(CallEvent::WebhookSent(record.clone())));
            (record, reply)
        }
    }

    /// Sends a call-progress status callback if the call asked for `event`.
    async fn progress(&mut self, event: ProgressEvent) {
        let Some(cb) = self.status_callback.clone() else {
            return;
        };
        if !cb.events.contains(&event) {
            return;
        }
        let status = match event {
            ProgressEvent::Initiated => "initiated",
            ProgressEvent::Ringing => "ringing",
            ProgressEvent::Answered => "in-progress",
            ProgressEvent::Completed => self.status().as_str(),
        };
        let mut params = self.id.voice_params(status);
        let sequence = self.sequence;
        self.sequence += 1;
        params.push(("Timestamp".into(), rfc2822_now()));
        params.push(("SequenceNumber".into(), sequence.to_string()));
        params.push(("CallbackSource".into(), "call-progress-events".into()));
        let delay = self.shared.config.final_status_delay;
        if event == ProgressEvent::Completed && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let snapshot = self.state.borrow().clone();
        if event == ProgressEvent::Completed {
            let secs = snapshot.duration_secs.unwrap_or(0);
            params.push(("CallDuration".into(), secs.to_string()));
            params.push(("Duration".into(), secs.div_ceil(60).to_string()));
        }
        if self.amd_on
            && let Some(answered_by) = &snapshot.answered_by
        {
            params.push(("AnsweredBy".into(), answered_by.clone()));
        }
        let (record, _) = self
            .webhook(WebhookKind::StatusCallback, &cb.method, &cb.url, params)
            .await;
        self.update(|s| {
            s.status_callbacks.push(StatusCallbackRecord {
                sequence_number: sequence,
                call_status: status.to_owned(),
                url: cb.url.clone(),
                http_status: record.status,
            });
        });
    }

    fn set_status(&self, status: CallStatus) {
        self.update(|s| s.status = status);
    }

    /// Answers the call (once): `in-progress` and the `answered` callback.
    pub(super) async fn answer(&mut self) {
        if self.answered.is_some() {
            return;
        }
        self.answered = Some(Instant::now());
        self.update(|s| {
            s.status = CallStatus::InProgress;
            s.answered_at = Some(chrono::Utc::now());
        });
        self.progress(ProgressEvent::Answered).await;
    }

    /// Runs an outbound call to its end.
    pub async fn run_outbound(mut self, spec: OutboundSpec) {
        let status = self.outbound(spec).await;
        self.finish(status).await;
    }

    /// Runs an inbound call to its end.
    pub async fn run_inbound(mut self, voice_url: String) {
        self.progress(ProgressEvent::Initiated).await;
        self.progress(ProgressEvent::Ringing).await;
        let status = self
            .drive(Flow::Fetch {
                kind: WebhookKind::Voice,
                url: voice_url,
                method: "POST".into(),
                extra: Vec::new(),
            })
            .await;
        self.finish(status).await;
    }

    async fn outbound(&mut self, spec: OutboundSpec) -> CallStatus {
        let mut source = spec.source;
        self.progress(ProgressEvent::Initiated).await;
        let (behaviour, answered_by) = {
            let settings = lock(&self.shared.settings);
            (
                settings
                    .callees
                    .get(&self.id.to)
                    .copied()
                    .unwrap_or(self.shared.config.default_callee),
                settings
                    .answered_by
                    .get(&self.id.to)
                    .cloned()
                    .unwrap_or_else(|| "human".into()),
            )
        };
        use super::config::CalleeBehaviour as B;
        if behaviour == B::Failed {
            return CallStatus::Failed;
        }
        self.set_status(CallStatus::Ringing);
        self.progress(ProgressEvent::Ringing).await;
        let ring = match behaviour {
            B::NoAnswer => spec.timeout,
            B::NoAnswerAfter(ring) => ring.min(spec.timeout),
            _ => self.shared.config.ring_time,
        };
        let deadline = Instant::now() + ring;
        loop {
            match self.guard(tokio::time::sleep_until(deadline)).await {
                Ok(()) => break,
                // A queued or ringing call may get new TwiML before it is answered.
                Err(Control::Redirect(new)) => source = new,
                Err(Control::Hangup | Control::Cancel) => return CallStatus::Canceled,
                // No stream to drop while ringing (the guard never returns it).
                Err(Control::ResetStream) => {}
            }
        }
        match behaviour {
            B::Busy => return CallStatus::Busy,
            B::NoAnswer | B::NoAnswerAfter(_) => return CallStatus::NoAnswer,
            B::Answer | B::Failed => {}
        }
        self.answer().await;
        let greeting = self.shared.config.machine_greeting;
        if AnsweredBy::parse(&answered_by).is_machine() && answered_by != "fax" {
            self.machine_beep = Some(Instant::now() + greeting);
            let beep_at = chrono::Utc::now()
                + chrono::Duration::from_std(greeting).unwrap_or_else(|_| chrono::Duration::zero());
            self.update(|s| {
                s.machine = Some(MachineRecording {
                    beep_at,
                    recorded: Vec::new(),
                    before_beep: Vec::new(),
                    audio_ms_after_beep: 0,
                    audio_ms_before_beep: 0,
                });
            });
        }
        let mut extra = Vec::new();
        if let Some(amd) = spec.amd {
            self.amd_on = true;
            let (answered_by, delay) = amd_result(
                &answered_by,
                &amd,
                self.shared.config.amd_duration,
                greeting,
            );
            let amd_ms = delay.as_millis().to_string();
            if amd.is_async {
                self.spawn_async_amd(amd.callback, answered_by, amd_ms, delay);
            } else {
                // Synchronous AMD holds the TwiML request until detection finishes.
                if let Err(control) = self.guard(tokio::time::sleep(delay)).await {
                    return self.drive(Flow::Interrupted(control)).await;
                }
                self.update(|s| s.answered_by = Some(answered_by.clone()));
                extra.push(("AnsweredBy".into(), answered_by));
                extra.push(("MachineDetectionDuration".into(), amd_ms));
            }
        }
        let flow = match source {
            TwimlSource::Inline(xml) => inline_flow(&xml),
            TwimlSource::Url { url, method } => Flow::Fetch {
                kind: WebhookKind::Voice,
                url,
                method,
                extra,
            },
        };
        self.drive(flow).await
    }

    /// Posts the asynchronous AMD result after the detection time, in its own task.
    fn spawn_async_amd(
        &mut self,
        callback: Option<(String, String)>,
        answered_by: String,
        amd_ms: String,
        delay: Duration,
    ) {
        let shared = self.shared.clone();
        let state = self.state.clone();
        let token = self.token.clone();
        let id = self.id.clone();
        self.amd_task = self.shared.spawn(async move {
            tokio::time::sleep(delay).await;
            state.send_modify(|s| s.answered_by = Some(answered_by.clone()));
            let Some((url, method)) = callback else {
                return;
            };
            let params = vec![
                ("AccountSid".to_owned(), id.account_sid.clone()),
                ("CallSid".to_owned(), id.sid.clone()),
                ("AnsweredBy".to_owned(), answered_by.clone()),
                ("MachineDetectionDuration".to_owned(), amd_ms),
            ];
            let (record, _) = webhook::send(
                &shared.http,
                &token,
                WebhookKind::Amd,
                &method,
                &url,
                params,
            )
            .await;
            state.send_modify(|s| {
                s.events.push(CallEvent::WebhookSent(record));
                s.events.push(CallEvent::AmdSent { answered_by });
            });
        });
    }

    /// Runs flows until the call ends; returns the final status.
    async fn drive(&mut self, mut flow: Flow) -> CallStatus {
        loop {
            flow = match flow {
                Flow::End(status) => return status,
                Flow::Run { doc, base, source } => self.run_doc(doc, base, source).await,
                Flow::Fetch {
                    kind,
                    url,
                    method,
                    extra,
                } => self.fetch(kind, url, method, extra).await,
                Flow::Interrupted(control) => match control {
                    Control::Redirect(TwimlSource::Inline(xml)) => inline_flow(&xml),
                    Control::Redirect(TwimlSource::Url { url, method }) => Flow::Fetch {
                        kind: WebhookKind::Redirect,
                        url,
                        method,
                        extra: Vec::new(),
                    },
                    // A dropped stream never interrupts a flow (the media task handles it).
                    Control::Hangup | Control::Cancel | Control::ResetStream => {
                        Flow::End(if self.answered.is_some() {
                            CallStatus::Completed
                        } else {
                            CallStatus::Canceled
                        })
                    }
                },
            };
        }
    }

    /// Fetches TwiML. A failure before the call is answered fails it; after, Twilio would
    /// play "an application error has occurred" and hang up.
    async fn fetch(
        &mut self,
        kind: WebhookKind,
        url: String,
        method: String,
        extra: Vec<(String, String)>,
    ) -> Flow {
        let mut params = self.id.voice_params(self.status().as_str());
        params.extend(extra);
        let request = self.webhook(kind, &method, &url, params);
        let fetched = self.guard(request).await;
        let (record, reply) = match fetched {
            Ok(r) => r,
            Err(control) => return Flow::Interrupted(control),
        };
        match webhook::twiml_from(reply.as_ref(), record.error.as_deref()) {
            Ok(doc) => Flow::Run {
                doc,
                base: Some(url.clone()),
                source: url,
            },
            Err(detail) => self.application_error(detail),
        }
    }

    fn application_error(&self, detail: String) -> Flow {
        tracing::debug!(call = %self.id.sid, %detail, "application error");
        self.event(CallEvent::ApplicationError { detail });
        Flow::End(if self.answered.is_some() {
            CallStatus::Completed
        } else {
            CallStatus::Failed
        })
    }

    /// Executes one document.
    async fn run_doc(&mut self, doc: Response, base: Option<String>, source: String) -> Flow {
        self.event(CallEvent::TwimlRun {
            source,
            verbs: doc.verbs.iter().map(verb_name).map(str::to_owned).collect(),
        });
        let ms_per_char = self.shared.config.speech_ms_per_char;
        for verb in doc.verbs {
            if !matches!(verb, Verb::Reject(_)) {
                self.answer().await;
            }
            match verb {
                Verb::Say(say) => {
                    if let Err(c) = self.say(&say.text, ms_per_char).await {
                        return Flow::Interrupted(c);
                    }
                }
                Verb::Gather(gather) => match self.gather(&gather, ms_per_char).await {
                    Err(c) => return Flow::Interrupted(c),
                    Ok(None) => {}
                    Ok(Some(digits)) => {
                        // Without `action`, Twilio posts the digits to the document's URL.
                        let action = gather.action.clone().or_else(|| base.clone());
                        if let Some(action) = action {
                            return match resolve(base.as_deref(), &action) {
                                Ok(url) => Flow::Fetch {
                                    kind: WebhookKind::GatherAction,
                                    url,
                                    method: gather.method.unwrap_or_else(|| "POST".into()),
                                    extra: vec![
                                        ("Digits".into(), digits),
                                        ("FinishedOnKey".into(), String::new()),
                                    ],
                                },
                                Err(detail) => self.application_error(detail),
                            };
                        }
                    }
                },
                Verb::Pause(pause) => {
                    let length = Duration::from_secs(u64::from(pause.length.unwrap_or(1)));
                    self.event(CallEvent::Paused(length));
                    if let Err(c) = self.guard(tokio::time::sleep(length)).await {
                        return Flow::Interrupted(c);
                    }
                }
                Verb::Hangup(_) => {
                    self.event(CallEvent::HungUp);
                    return Flow::End(CallStatus::Completed);
                }
                Verb::Reject(reject) => {
                    let reason = reject.reason.unwrap_or_else(|| "rejected".into());
                    let answered = self.answered.is_some();
                    self.event(CallEvent::Rejected {
                        reason: reason.clone(),
                    });
                    // Only effective as the first verb; later it just ends the call.
                    return Flow::End(if answered {
                        CallStatus::Completed
                    } else if reason == "busy" {
                        CallStatus::Busy
                    } else {
                        CallStatus::NoAnswer
                    });
                }
                Verb::Redirect(redirect) => {
                    return match resolve(base.as_deref(), &redirect.url) {
                        Ok(url) => Flow::Fetch {
                            kind: WebhookKind::Redirect,
                            url,
                            method: redirect.method.unwrap_or_else(|| "POST".into()),
                            extra: Vec::new(),
                        },
                        Err(detail) => self.application_error(detail),
                    };
                }
                Verb::Dial(dial) => match self.dial(&dial).await {
                    Err(c) => return Flow::Interrupted(c),
                    Ok(params) => {
                        if let Some(action) = dial.action {
                            return match resolve(base.as_deref(), &action) {
                                Ok(url) => Flow::Fetch {
                                    kind: WebhookKind::DialAction,
                                    url,
                                    method: dial.method.unwrap_or_else(|| "POST".into()),
                                    extra: params,
                                },
                                Err(detail) => self.application_error(detail),
                            };
                        }
                    }
                },
                Verb::Connect(connect) => match self.connect(&connect, base.as_deref()).await {
                    StreamEnd::CallerHungUp => return Flow::End(CallStatus::Completed),
                    StreamEnd::Interrupted(c) => return Flow::Interrupted(c),
                    StreamEnd::ServerClosed | StreamEnd::Rejected => {
                        if let Some(action) = connect.action {
                            return match resolve(base.as_deref(), &action) {
                                Ok(url) => Flow::Fetch {
                                    kind: WebhookKind::ConnectAction,
                                    url,
                                    method: connect.method.unwrap_or_else(|| "POST".into()),
                                    extra: Vec::new(),
                                },
                                Err(detail) => self.application_error(detail),
                            };
                        }
                    }
                },
            }
        }
        self.event(CallEvent::HungUp);
        Flow::End(CallStatus::Completed)
    }

    /// Speaks `text` (recorded in `said`).
    async fn say(&mut self, text: &str, ms_per_char: u64) -> Result<(), Control> {
        let chars = text.chars().count() as u64;
        let after_beep = self
            .machine_beep
            .and_then(|beep| Instant::now().checked_duration_since(beep))
            .map(|d| d.as_millis() as u64);
        self.update(|s| {
            s.said.push(text.to_owned());
            s.events.push(CallEvent::Said(text.to_owned()));
            if let Some(m) = &mut s.machine {
                match after_beep {
                    Some(ms) => m.recorded.push((text.to_owned(), ms)),
                    None => m.before_beep.push(text.to_owned()),
                }
            }
        });
        let speak = Duration::from_millis(chars.saturating_mul(ms_per_char));
        self.guard(tokio::time::sleep(speak)).await
    }

    /// Plays the `<Gather>`'s nested verbs, then collects the keys the party at an outbound
    /// call's number presses (set with `set_warm_operator`); `None` after `timeout` without
    /// a key (the next verb runs).
    async fn gather(&mut self, g: &Gather, ms_per_char: u64) -> Result<Option<String>, Control> {
        for child in &g.children {
            match child {
                GatherChild::Say(say) => self.say(&say.text, ms_per_char).await?,
                GatherChild::Pause(pause) => {
                    let length = Duration::from_secs(u64::from(pause.length.unwrap_or(1)));
                    self.event(CallEvent::Paused(length));
                    self.guard(tokio::time::sleep(length)).await?;
                }
            }
        }
        let key = (self.id.direction == super::state::CallDirection::OutboundApi)
            .then(|| {
                lock(&self.shared.settings)
                    .keypresses
                    .get(&self.id.to)
                    .cloned()
            })
            .flatten();
        if key.is_none() {
            let timeout = Duration::from_secs(u64::from(g.timeout.unwrap_or(5)));
            self.guard(tokio::time::sleep(timeout)).await?;
        }
        self.event(CallEvent::Gathered {
            digits: key.clone(),
        });
        Ok(key)
    }

    /// Sends a conference's status callbacks from this participant's task, in order.
    async fn conference_notices(&mut self, notices: Vec<conference::Notice>) {
        for (url, method, params) in notices {
            let _ = self
                .webhook(WebhookKind::ConferenceStatus, &method, &url, params)
                .await;
        }
    }

    /// Takes part in a conference until it ends, a REST update takes the call out, or (a
    /// simulated operator who started it) their talk time is over.
    async fn conference(&mut self, c: &Conference) -> Result<(), Control> {
        let account = self.id.account_sid.clone();
        let sid = self.id.sid.clone();
        let room = self.shared.rooms.room(&account, c.name.trim());
        let joined = room.join(&account, &sid, c);
        self.event(conference::joined_event(&room, c, joined.waiting));
        self.conference_notices(joined.notices).await;
        let mut result = Ok(());
        if joined.waiting {
            let waiting = room.clone();
            result = self
                .guard(async move { waiting.wait_phase(STARTED).await })
                .await;
            if result.is_ok() && room.phase() == STARTED {
                self.event(CallEvent::ConferenceBridged {
                    conference_sid: room.sid.clone(),
                });
            }
        }
        if result.is_ok() && room.phase() < ENDED {
            let talk = (c.start_conference_on_enter == Some(true)
                && self.id.direction == super::state::CallDirection::OutboundApi)
                .then(|| {
                    conference::talk_time(
                        lock(&self.shared.settings).talk.get(&self.id.to).copied(),
                    )
                });
            let staying = room.clone();
            result = self
                .guard(async move {
                    match talk {
                        Some(talk) => {
                            tokio::select! {
                                () = staying.wait_phase(ENDED) => {}
                                () = tokio::time::sleep(talk) => {}
                            }
                        }
                        None => staying.wait_phase(ENDED).await,
                    }
                })
                .await;
        }
        let notices = room.leave(&account, &sid);
        self.event(CallEvent::ConferenceLeft {
            conference_sid: room.sid.clone(),
        });
        self.conference_notices(notices).await;
        result
    }

    /// Rings the `<Dial>` numbers (or joins its conference); returns the `action`
    /// parameters.
    async fn dial(&mut self, dial: &Dial) -> Result<Vec<(String, String)>, Control> {
        if let Some(c) = dial.conference() {
            let c = c.clone();
            self.conference(&c).await?;
            return Ok(Vec::new());
        }
        let numbers = dial.numbers();
        let legs: Vec<_> = {
            let settings = lock(&self.shared.settings);
            numbers
                .iter()
                .map(|n| {
                    let b = settings
                        .operators
                        .get(n)
                        .copied()
                        .unwrap_or(self.shared.config.default_operator);
                    (n.clone(), b)
                })
                .collect()
        };
        let timeout = Duration::from_secs(u64::from(dial.timeout.unwrap_or(30)));
        let plan = dial::plan(&legs, timeout, self.shared.config.ring_time, new_call_sid);
        let waited = self.guard(tokio::time::sleep(plan.wait)).await;
        let mut outcome = plan.outcome;
        if waited.is_err() {
            outcome.status = "canceled".into();
            outcome.bridged = false;
            outcome.duration_secs = 0;
        }
        let params = dial::action_params(&outcome);
        self.event(CallEvent::Dialed { numbers, outcome });
        waited.map(|()| params)
    }

    /// Ends the call: final status, duration, the `completed` callback.
    async fn finish(mut self, status: CallStatus) {
        let duration = self.answered.map(|at| round_secs(at.elapsed()));
        self.update(|s| {
            s.status = status;
            s.ended_at = Some(chrono::Utc::now());
            s.duration_secs = Some(duration.unwrap_or(0));
        });
        if let Some(task) = self.amd_task.take() {
            // A result already decided is still delivered; a pending detection is dropped.
            if self.state.borrow().answered_by.is_none() {
                task.abort();
            } else {
                let limit = self.shared.config.webhook_timeout;
                let _ = tokio::time::timeout(limit, task).await;
            }
        }
        self.complete_recordings().await;
        self.progress(ProgressEvent::Completed).await;
        tracing::info!(call = %self.id.sid, status = %status, duration = ?duration, "call ended");
        self.update(|s| s.finished = true);
    }
}

/// What detection reports for a callee whose `answered_by` setting is `setting`, and when:
/// a person, a fax or an unknown callee after the detection time; a machine at once
/// (`machine_start`) with `Enable`, and at the end of its greeting (the beep:
/// `machine_end_beep`, or the `machine_end_*` set) with `DetectMessageEnd`. A result later
/// than `MachineDetectionTimeout` is `unknown`, at the timeout.
pub(super) fn amd_result(
    setting: &str,
    amd: &AmdSpec,
    detection: Duration,
    greeting: Duration,
) -> (String, Duration) {
    let (result, at) = match AnsweredBy::parse(setting) {
        AnsweredBy::MachineStart | AnsweredBy::MachineEnd if !amd.detect_message_end => {
            ("machine_start".to_owned(), detection)
        }
        AnsweredBy::MachineEnd => (setting.to_owned(), greeting.max(detection)),
        AnsweredBy::MachineStart => ("machine_end_beep".to_owned(), greeting.max(detection)),
        _ => (setting.to_owned(), detection),
    };
    match amd.timeout {
        Some(limit) if at > limit => ("unknown".to_owned(), limit),
        _ => (result, at),
    }
}

fn inline_flow(xml: &str) -> Flow {
    match webhook::parse_twiml(xml) {
        Ok(doc) => Flow::Run {
            doc,
            base: None,
            source: "inline".into(),
        },
        // Inline TwiML is validated by the REST API; keep the call safe anyway.
        Err(_) => Flow::End(CallStatus::Failed),
    }
}

/// The TwiML name of a verb.
pub(crate) fn verb_name(verb: &Verb) -> &'static str {
    match verb {
        Verb::Say(_) => "Say",
        Verb::Pause(_) => "Pause",
        Verb::Hangup(_) => "Hangup",
        Verb::Reject(_) => "Reject",
        Verb::Redirect(_) => "Redirect",
        Verb::Dial(_) => "Dial",
        Verb::Connect(_) => "Connect",
        Verb::Gather(_) => "Gather",
    }
}

/// A new call SID: `CA` + 32 lower-case hex digits.
pub(crate) fn new_call_sid() -> String {
    format!("CA{}", uuid::Uuid::new_v4().simple())
}
