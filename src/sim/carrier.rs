//! The carrier simulator: a Twilio stand-in over real sockets (DESIGN.md §6).
//!
//! [`CarrierSim::start`] binds a Twilio-compatible REST API (PROTOCOLS §3.4–§3.7) and returns
//! a [`CarrierSimHandle`]. Calls — created through `Calls.json` or placed with
//! [`CarrierSimHandle::place_inbound_call`] — each run in their own task: status callbacks
//! with sequence numbers (§3.3), the callee's simulated behaviour, answering-machine
//! detection (§6), and TwiML execution (`<Say>`, `<Pause>`, `<Hangup>`, `<Reject>`,
//! `<Redirect>`, `<Dial>`, `<Connect><Stream>`), with every webhook signed as Twilio signs
//! it (§2). A `<Connect><Stream>` opens the media websocket and speaks the Media Streams
//! protocol (§1) with a scripted caller ([`CallerScript`]).
//!
//! Tests observe calls through [`CallSnapshot`]s without sleeping:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use stateset_voice::sim::carrier::{CarrierConfig, CarrierSim, CallerScript, InboundCall};
//!
//! let sim = CarrierSim::start(CarrierConfig::with_account("AC00000000000000000000000000000000", "token")).await?;
//! let sid = sim.place_inbound_call(InboundCall {
//!     account_sid: "AC00000000000000000000000000000000".into(),
//!     from: "+15550001111".into(),
//!     to: "+15550002222".into(),
//!     voice_url: "http://127.0.0.1:5050/api/v1/incoming-call".into(),
//!     script: CallerScript::default().speak(Duration::from_millis(800), "hi").hang_up(),
//!     ..InboundCall::default()
//! })?;
//! let ended = tokio::time::timeout(Duration::from_secs(10), sim.wait_ended(&sid)).await?;
//! println!("{} after {:?}s", ended.status, ended.duration_secs);
//! # Ok(()) }
//! ```
//!
//! Dropping the handle (or [`CarrierSimHandle::shutdown`]) stops the server and every call.

mod call;
mod caller;
mod conference;
mod config;
mod dial;
mod media;
mod recording;
mod resource;
mod rest;
mod shared;
mod state;
mod webhook;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::AbortHandle;

pub use caller::{CallerScript, CallerStep};
pub use config::{
    CalleeBehaviour, CarrierConfig, FaultSpec, MediaObserver, OperatorBehaviour, WarmOperator,
};
pub use state::{
    CallDirection, CallEvent, CallSnapshot, CallStatus, ConferenceRecord, DialOutcome,
    MachineRecording, MediaStats, MessageRecord, RequestRecord, StatusCallbackRecord, StreamCloser,
    WebhookKind, WebhookRecord, param,
};

use call::{CallRunner, Control, StatusCallbackSpec};
use config::Fault;
use shared::{Shared, lock};
use webhook::CallIdentity;

/// What can go wrong driving the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The REST listener could not be bound.
    #[error("cannot bind the carrier simulator to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The webhook HTTP client could not be built.
    #[error("cannot build the webhook client: {0}")]
    Client(#[from] reqwest::Error),
    /// No such account is configured.
    #[error("unknown account {0}")]
    UnknownAccount(String),
    /// No such call.
    #[error("unknown call {0}")]
    UnknownCall(String),
    /// The call has already ended.
    #[error("call {0} is not in progress")]
    CallEnded(String),
    /// A URL is not an absolute http(s) URL.
    #[error("invalid URL {0:?}")]
    InvalidUrl(String),
    /// The simulator was shut down.
    #[error("the carrier simulator is shut down")]
    Shutdown,
}

/// An inbound call: a caller phoning one of the account's numbers.
#[derive(Debug, Clone, Default)]
pub struct InboundCall {
    /// The account owning the called number (its token signs the webhooks).
    pub account_sid: String,
    /// Caller (`From`).
    pub from: String,
    /// Called number (`To`).
    pub to: String,
    /// The number's voice URL (TwiML is fetched from it with a signed POST).
    pub voice_url: String,
    /// Call-progress status callback URL.
    pub status_callback: Option<String>,
    /// Events for the status callback (`initiated`, `ringing`, `answered`, `completed`);
    /// empty means only `completed`.
    pub status_callback_events: Vec<String>,
    /// What the caller does on a media stream.
    pub script: CallerScript,
}

/// Starts carrier simulators.
#[derive(Debug)]
pub struct CarrierSim;

impl CarrierSim {
    /// Binds the REST API and starts serving. Must be called inside a tokio runtime.
    pub async fn start(config: CarrierConfig) -> Result<CarrierSimHandle, SimError> {
        crate::startup::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .build()?;
        let addr = config.bind;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let shared = Arc::new(Shared::new(config, http));
        let server = tokio::spawn(rest::serve(shared.clone(), listener)).abort_handle();
        tracing::info!(%addr, "carrier simulator listening");
        Ok(CarrierSimHandle {
            shared,
            addr,
            server,
        })
    }
}

/// A running carrier simulator. Dropping it stops the server and every call.
pub struct CarrierSimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: AbortHandle,
}

impl std::fmt::Debug for CarrierSimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarrierSimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl CarrierSimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The REST base URL (`http://127.0.0.1:PORT`), in place of `https://api.twilio.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `…/2010-04-01/Accounts/{account_sid}/Calls.json`.
    pub fn calls_url(&self, account_sid: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{account_sid}/Calls.json",
            self.base_url()
        )
    }

    /// `…/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json`.
    pub fn call_url(&self, account_sid: &str, call_sid: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json",
            self.base_url()
        )
    }

    /// `…/2010-04-01/Accounts/{account_sid}/Messages.json`.
    pub fn messages_url(&self, account_sid: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
            self.base_url()
        )
    }

    /// Adds (or re-keys) an account.
    pub fn add_account(&self, account_sid: impl Into<String>, auth_token: impl Into<String>) {
        lock(&self.shared.settings)
            .accounts
            .insert(account_sid.into(), auth_token.into());
    }

    /// Sets what the callee at `number` does when an outbound call reaches it.
    pub fn set_callee(&self, number: impl Into<String>, behaviour: CalleeBehaviour) {
        lock(&self.shared.settings)
            .callees
            .insert(number.into(), behaviour);
    }

    /// Sets what `number` does when `<Dial>`ed.
    pub fn set_operator(&self, number: impl Into<String>, behaviour: OperatorBehaviour) {
        lock(&self.shared.settings)
            .operators
            .insert(number.into(), behaviour);
    }

    /// Sets what the operator at `number` does when a warm transfer calls it (an outbound
    /// leg whose TwiML whispers inside a `<Gather>`): answer and press 1 (then talk in the
    /// conference), press 2, press nothing, or never answer.
    pub fn set_warm_operator(&self, number: impl Into<String>, behaviour: WarmOperator) {
        let number = number.into();
        let mut settings = lock(&self.shared.settings);
        let (callee, key) = match behaviour {
            WarmOperator::Accept { talk } => {
                settings.talk.insert(number.clone(), talk);
                (CalleeBehaviour::Answer, Some("1"))
            }
            WarmOperator::Decline => (CalleeBehaviour::Answer, Some("2")),
            WarmOperator::NoKey => (CalleeBehaviour::Answer, None),
            WarmOperator::NoAnswer => (CalleeBehaviour::NoAnswer, None),
        };
        settings.callees.insert(number.clone(), callee);
        match key {
            Some(key) => settings.keypresses.insert(number, key.to_owned()),
            None => settings.keypresses.remove(&number),
        };
    }

    /// Every conference so far, in creation order.
    pub fn conferences(&self) -> Vec<ConferenceRecord> {
        self.shared.rooms.records()
    }

    /// Sets who answers calls to `number`, as AMD reports it (`AnsweredBy`, default `human`).
    /// A machine (`machine_start`, `machine_end_*`) plays a greeting of
    /// [`CarrierConfig::machine_greeting`] ending with a beep and records what follows
    /// ([`CallSnapshot::machine`]); detection reports it as `machine_start` with `Enable` and
    /// at the beep (`machine_end_beep`, or the `machine_end_*` set) with `DetectMessageEnd`.
    pub fn set_answered_by(&self, number: impl Into<String>, answered_by: &str) {
        lock(&self.shared.settings)
            .answered_by
            .insert(number.into(), answered_by.to_owned());
    }

    /// Sets what the callee at `number` does on a media stream of an outbound call.
    pub fn set_callee_script(&self, number: impl Into<String>, script: CallerScript) {
        lock(&self.shared.settings)
            .callee_scripts
            .insert(number.into(), script);
    }

    /// From now on, `Calls.json` (create and list) and `Calls/{Sid}.json` reads answer only
    /// after `delay`; a call is created at once all the same (see
    /// [`CarrierConfig::create_response_delay`]).
    pub fn set_calls_response_delay(&self, delay: Duration) {
        let mut settings = lock(&self.shared.settings);
        settings.create_response_delay = delay;
        settings.lookup_response_delay = delay;
    }

    /// From now on, `POST Calls.json` answers only after `delay` (the call is created at
    /// once); lookups are unaffected.
    pub fn set_create_response_delay(&self, delay: Duration) {
        lock(&self.shared.settings).create_response_delay = delay;
    }

    /// Calls created through `Calls.json` so far.
    pub fn calls_created(&self) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/Calls.json") && r.status == 201)
            .count()
    }

    /// The next REST request answers with this error.
    pub fn fail_next_request(&self, fault: FaultSpec) {
        lock(&self.shared.faults).push_back(Fault::Fail(fault));
    }

    /// The next REST request answers only after `delay`.
    pub fn delay_next_request(&self, delay: Duration) {
        lock(&self.shared.faults).push_back(Fault::Delay(delay));
    }

    /// Places an inbound call: a signed POST to `voice_url` with the §3.1 parameters
    /// (`CallStatus=ringing`, `Direction=inbound`), then the returned TwiML runs. A voice
    /// URL that answers non-2xx or something other than TwiML ends the call `failed`.
    /// Returns the call SID at once; the call runs in the background.
    pub fn place_inbound_call(&self, call: InboundCall) -> Result<String, SimError> {
        let token = self
            .shared
            .token(&call.account_sid)
            .ok_or_else(|| SimError::UnknownAccount(call.account_sid.clone()))?;
        let http_url =
            |u: &str| url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !http_url(&call.voice_url) {
            return Err(SimError::InvalidUrl(call.voice_url));
        }
        if let Some(cb) = call.status_callback.as_deref()
            && !http_url(cb)
        {
            return Err(SimError::InvalidUrl(cb.to_owned()));
        }
        let sid = call::new_call_sid();
        let id = CallIdentity {
            sid: sid.clone(),
            account_sid: call.account_sid.clone(),
            from: call.from.clone(),
            to: call.to.clone(),
            direction: CallDirection::Inbound,
        };
        let snapshot = CallSnapshot::new(
            sid.clone(),
            call.account_sid,
            call.from,
            call.to,
            CallDirection::Inbound,
            CallStatus::Ringing,
        );
        let (entry, control) = self.shared.register_call(snapshot);
        let status_callback = call
            .status_callback
            .map(|url| StatusCallbackSpec::new(url, None, &call.status_callback_events));
        let runner = CallRunner::new(
            self.shared.clone(),
            id,
            token,
            entry.state.clone(),
            control,
            status_callback,
            call.script,
        );
        tracing::info!(call = %sid, "carrier simulator: inbound call placed");
        self.shared
            .spawn(runner.run_inbound(call.voice_url))
            .ok_or(SimError::Shutdown)?;
        Ok(sid)
    }

    /// Hangs a call up as `Status=completed` through the REST API would.
    pub fn hangup(&self, call_sid: &str) -> Result<(), SimError> {
        let entry = self
            .shared
            .call(call_sid)
            .ok_or_else(|| SimError::UnknownCall(call_sid.to_owned()))?;
        if entry.state.borrow().status.is_final() {
            return Err(SimError::CallEnded(call_sid.to_owned()));
        }
        entry
            .control
            .send(Control::Hangup)
            .map_err(|_| SimError::CallEnded(call_sid.to_owned()))
    }

    /// Drops the call's open media websocket as a network fault would (no `stop`, no close
    /// frame); the call then asks its `<Connect action>` what follows.
    pub fn reset_stream(&self, call_sid: &str) -> Result<(), SimError> {
        let entry = self
            .shared
            .call(call_sid)
            .ok_or_else(|| SimError::UnknownCall(call_sid.to_owned()))?;
        entry
            .control
            .send(Control::ResetStream)
            .map_err(|_| SimError::CallEnded(call_sid.to_owned()))
    }

    /// The current snapshot of a call.
    pub fn call(&self, call_sid: &str) -> Option<CallSnapshot> {
        self.shared
            .call(call_sid)
            .map(|entry| entry.state.borrow().clone())
    }

    /// Waits until the call exists and `pred` holds for its snapshot, and returns that
    /// snapshot. Returns as soon as the predicate holds; never resolves otherwise, so wrap
    /// it in `tokio::time::timeout`.
    pub async fn wait_for(
        &self,
        call_sid: &str,
        mut pred: impl FnMut(&CallSnapshot) -> bool + Send,
    ) -> CallSnapshot {
        let entry = loop {
            let mut changed = self.shared.calls_changed();
            if let Some(entry) = self.shared.call(call_sid) {
                break entry;
            }
            if changed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let mut rx = entry.state.subscribe();
        let found = rx.wait_for(|s| pred(s)).await.map(|s| s.clone());
        match found {
            Ok(snapshot) => snapshot,
            Err(_) => std::future::pending().await,
        }
    }

    /// Waits until the call has ended and every webhook of it has been sent.
    pub async fn wait_ended(&self, call_sid: &str) -> CallSnapshot {
        self.wait_for(call_sid, |s| s.finished).await
    }

    /// Every call, in creation order.
    pub fn calls(&self) -> Vec<CallSnapshot> {
        self.shared
            .all_calls()
            .iter()
            .map(|e| e.state.borrow().clone())
            .collect()
    }

    /// SIDs of calls as they are created.
    pub fn subscribe_new_calls(&self) -> broadcast::Receiver<String> {
        self.shared.subscribe_new_calls()
    }

    /// SMS sent through `Messages.json`.
    pub fn messages(&self) -> Vec<MessageRecord> {
        lock(&self.shared.messages).clone()
    }

    /// REST requests received, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).clone()
    }

    /// SIDs (`RE…`) of the recordings of a call, in creation order (deleted ones included).
    pub fn recordings_of(&self, call_sid: &str) -> Vec<String> {
        lock(&self.shared.recordings)
            .iter()
            .filter(|r| r.call_sid == call_sid)
            .map(|r| r.sid.clone())
            .collect()
    }

    /// The WAV the simulator holds for a recording (`None` when unknown or deleted).
    pub fn recording_wav(&self, recording_sid: &str) -> Option<Vec<u8>> {
        self.shared
            .recording(recording_sid)
            .filter(|r| !r.deleted)
            .map(|r| r.wav())
    }

    /// A recording's status (`in-progress`, `completed`, `stopped`) and whether it was
    /// deleted.
    pub fn recording_status(&self, recording_sid: &str) -> Option<(String, bool)> {
        self.shared
            .recording(recording_sid)
            .map(|r| (r.status, r.deleted))
    }

    /// Stops the server and every call task (also done on drop).
    pub fn shutdown(&self) {
        self.server.abort();
        self.shared.abort_all();
    }
}

impl Drop for CarrierSimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
