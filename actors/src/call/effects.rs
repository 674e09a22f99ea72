//! The call actor executing what its conversation decided ([`Effect`]s), and the end of the
//! leg: tool tasks drained, the recorder flushed, the voice session finished, the
//! continuation recorded before the Twilio socket closes, and the call completed through
//! [`crate::outcome::Outcomes`] unless it continues (a handoff dial, a resume).
//!
//! Nothing here awaits the database while the call is live: records go to the recorder, and
//! I/O with a result the conversation needs runs in tasks that report back by message.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::ActorRef;
use tracing::Instrument as _;

use super::conversation::{Effect, Ending, Input};
use super::pumps::MediaCmd;
use super::{CallMsg, CallState, ai, handoff, tools};
use crate::store::LegEnd;

/// How long the end of a leg waits for cancelled tool tasks to record their cancellation.
const TOOLS_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

impl CallState {
    /// Executes `effects` in order (and the inputs they lead to at once, e.g. a playback that
    /// had already drained).
    pub(super) async fn apply(&mut self, myself: &ActorRef<CallMsg>, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            if self.ended {
                return;
            }
            match effect {
                Effect::Ai(event) => self.send_ai(&event).await,
                Effect::Record(record) => self.recorder.record(record),
                Effect::Phase(phase) => self.phase(phase),
                Effect::LastLine(speaker, text) => {
                    let role = speaker.as_str().to_owned();
                    self.deps
                        .active
                        .update(&self.call.id, |c| c.last_line = Some((role, text)));
                }
                Effect::Timer(timer, after) => {
                    myself.send_after(after, move || CallMsg::Timer(timer));
                }
                Effect::Connect { replay } => self.connect(myself, replay),
                Effect::WatchAnsweredBy(limit) => {
                    self.task(myself, move |deps, call| async move {
                        let machine = watch_answered_by(&deps.store, &call.id, limit).await;
                        CallMsg::AnsweredBy(machine)
                    });
                }
                Effect::RunTool(job) => {
                    let id = job.invocation.model_call_id.clone();
                    let ctx = tools::ToolContext {
                        deps: self.deps.clone(),
                        call: Arc::clone(&self.call),
                        owner: self.owner(),
                        actor: myself.clone(),
                    };
                    let running = tools::spawn(ctx, *job, self.span.clone());
                    self.tools.insert(id, running);
                }
                Effect::CancelTool {
                    model_call_id,
                    reason,
                } => {
                    if let Some(task) = self.tools.remove(&model_call_id) {
                        self.cancelled.push(task.cancel(reason));
                    }
                }
                Effect::Escalate(req) => {
                    self.task(myself, |deps, call| async move {
                        let resolution = handoff::resolve(&deps, &call, *req).await;
                        CallMsg::Escalated(Box::new(resolution))
                    });
                }
                Effect::Control(req) => {
                    self.task(myself, |deps, call| async move {
                        CallMsg::ControlDone(handoff::control(&deps, &call, *req).await)
                    });
                }
                Effect::WatchDrain => {
                    let drained = self
                        .playback
                        .lock()
                        .map(|mut p| p.watch_drain())
                        .unwrap_or(true);
                    if drained {
                        let more = self.conversation.handle(self.now(), Input::PlaybackDrained);
                        queue.extend(more);
                    }
                }
                Effect::End(ending) => {
                    self.end(myself, ending).await;
                    return;
                }
            }
        }
    }

    /// Runs I/O of the call in a task (aborted with the actor) that reports its result.
    fn task<F, Fut>(&mut self, myself: &ActorRef<CallMsg>, work: F)
    where
        F: FnOnce(super::CallDeps, Arc<crate::store::CallRecord>) -> Fut,
        Fut: std::future::Future<Output = CallMsg> + Send + 'static,
    {
        let actor = myself.clone();
        let work = work(self.deps.clone(), Arc::clone(&self.call));
        // Boxed: the task's slot, kept by its abort handle until the call ends, then holds a
        // pointer instead of the whole finished future (see `docs/performance.md`, memory).
        let task = tokio::spawn(Box::pin(
            async move {
                let _ = actor.cast(work.await);
            }
            .instrument(self.span.clone()),
        ));
        self.guard.tasks.push(task.abort_handle());
    }

    async fn send_ai(&self, event: &crate::realtime::ClientEvent) {
        if !self.ai_attached {
            return;
        }
        match event.to_json() {
            Ok(text) => {
                let _ = self.media.send(MediaCmd::Send(text));
            }
            Err(error) => tracing::warn!(error = %error, "could not encode an ai event"),
        }
    }

    /// Opens a new AI connection in a task; events of the previous one are ignored from now.
    fn connect(&mut self, myself: &ActorRef<CallMsg>, replay: Vec<(super::Speaker, String)>) {
        self.ai_generation += 1;
        // The previous connection closes (its events are ignored from now).
        if std::mem::take(&mut self.ai_attached) {
            let _ = self.media.send(MediaCmd::CloseModel(None));
        }
        let generation = self.ai_generation;
        let deps = self.deps.clone();
        let call = Arc::clone(&self.call);
        let version = self.version.clone();
        let actor = myself.clone();
        // Boxed, as in `task`: the connection future is freed once it is done.
        let task = tokio::spawn(Box::pin(
            async move {
                let link = ai::connect(&deps, &call, version.as_deref(), &replay).await;
                if let Err(ractor::MessagingErr::SendErr(CallMsg::AiConnected(_, Ok(mut link)))) =
                    actor.cast(CallMsg::AiConnected(generation, link))
                {
                    // The actor is gone: close the session properly.
                    let _ = tokio::time::timeout(ai::AI_CLOSE_TIMEOUT, link.sink.close()).await;
                }
            }
            .instrument(self.span.clone()),
        ));
        self.guard.tasks.push(task.abort_handle());
    }

    /// Whether the dial of this call's handoff was settled while the leg was closing (a
    /// `dial-result` that found this session still live could not complete the call): every
    /// handoff is past `dialing` and the caller is not coming back to the agent. Then this
    /// leg's end completes the call, with the reason `dial-result` recorded.
    async fn handoff_settled(&self) -> bool {
        match self.deps.store.call_handoffs(&self.call.id).await {
            Ok(handoffs) => {
                !handoffs.is_empty()
                    && handoffs.iter().all(|h| h.status != "dialing")
                    && handoffs
                        .last()
                        .is_some_and(|h| h.outcome.as_deref() != Some("agent"))
            }
            Err(error) => {
                tracing::warn!(error = %error, "could not read the call's handoffs");
                false
            }
        }
    }

    /// The leg is over: final records, then the sockets close and the actor stops.
    async fn end(&mut self, myself: &ActorRef<CallMsg>, ending: Ending) {
        self.ended = true;
        let Ending {
            reason,
            detail,
            continuation,
            redirected,
            status,
        } = ending;
        tracing::info!(end_reason = reason.as_str(), continuation = ?continuation, "call leg ended");
        // Tool tasks record their cancellation; the completion counts their records.
        let mut tasks = std::mem::take(&mut self.cancelled);
        for (_, task) in self.tools.drain() {
            tasks.push(task.cancel(String::from("the call ended before the tool finished")));
        }
        let _ = tokio::time::timeout(TOOLS_DRAIN_TIMEOUT, futures::future::join_all(tasks)).await;
        self.recorder.flush().await;
        let call = &self.call.id;
        let leg = LegEnd {
            call,
            session: &self.session_id,
            status,
            reason,
            detail: detail.as_deref(),
            continuation: continuation.filter(|_| !redirected),
        };
        match self.deps.store.end_leg(&leg).await {
            Ok(true) => self.deps.evaluations.wake(),
            Ok(false) => {}
            Err(error) => tracing::warn!(error = %error, "could not record the end of the leg"),
        }
        if (!continuation.is_some_and(|c| c.continues()) || self.handoff_settled().await)
            && let Err(error) = self
                .deps
                .outcomes
                .complete(call, reason, detail, None)
                .await
        {
            tracing::warn!(error = %error, "could not complete the call");
        }
        self.finished.store(true, Ordering::SeqCst);
        let _ = self.media.send(MediaCmd::Close {
            code: 1000,
            reason: reason.as_str().to_owned(),
        });
        self.close_ai().await;
        myself.stop(Some(reason.as_str().to_owned()));
    }
}

/// Reads the call's AMD result (recorded by `amd-status` on any node) until it is there or
/// `limit` has passed: `Some(true)` for a machine (or a fax), `Some(false)` for anyone else,
/// `None` when nothing came in time (the conversation's own timer releases the greeting).
async fn watch_answered_by(
    store: &crate::store::Store,
    call: &crate::ids::CallId,
    limit: std::time::Duration,
) -> Option<bool> {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(200);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match store.get_call_by_id(call).await {
            Ok(Some(c)) => {
                if let Some(answered_by) = c.answered_by {
                    return Some(
                        crate::telephony::amd::AnsweredBy::parse(&answered_by).is_machine(),
                    );
                }
            }
            Ok(None) => return None,
            Err(error) => tracing::warn!(error = %error, "could not read the call's AMD result"),
        }
        if tokio::time::Instant::now() + EVERY > deadline {
            return None;
        }
        tokio::time::sleep(EVERY).await;
    }
}
