//! `SingletonRef`: the handle on a restartable singleton actor that always points at its
//! current incarnation. The root supervisor updates it on every (re)start, so nobody holds
//! an `ActorRef` that could go stale. It lives apart from the supervisor so that the actors
//! it points at can hold one without importing the supervision tree.
//!
//! It also keeps the singleton's **mailbox depth** (ractor has no queue-length API): every
//! message sent through [`Mailbox`] (what [`SingletonRef::get`] hands out; `call_t!` and
//! `cast!` use its counted `call` and `cast`) adds one, the actor's handler removes one as it
//! takes a message ([`handled`]), and an actor's own timers count their sends ([`sent`]). A
//! new incarnation starts at zero: the mailbox of the one it replaces is gone.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};

use dashmap::DashMap;
use ractor::rpc::CallResult;
use ractor::{ActorId, ActorRef, MessagingErr, RpcReplyPort};
use tokio::sync::watch;

/// The depth counter of every running singleton incarnation, by actor id.
static DEPTHS: LazyLock<DashMap<ActorId, Arc<AtomicI64>>> = LazyLock::new(DashMap::new);

/// The singleton `actor` took a message from its mailbox (call first thing in `handle`).
pub fn handled(actor: ActorId) {
    if let Some(depth) = DEPTHS.get(&actor) {
        depth.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The singleton `actor` sent itself a message (its timers).
pub fn sent(actor: ActorId) {
    if let Some(depth) = DEPTHS.get(&actor) {
        depth.fetch_add(1, Ordering::Relaxed);
    }
}

/// A singleton's current incarnation, counting what is sent to it.
pub struct Mailbox<M: ractor::Message> {
    actor: ActorRef<M>,
    depth: Arc<AtomicI64>,
}

impl<M: ractor::Message> Clone for Mailbox<M> {
    fn clone(&self) -> Self {
        Self {
            actor: self.actor.clone(),
            depth: Arc::clone(&self.depth),
        }
    }
}

impl<M: ractor::Message> std::ops::Deref for Mailbox<M> {
    type Target = ActorRef<M>;
    fn deref(&self) -> &ActorRef<M> {
        &self.actor
    }
}

impl<M: ractor::Message> Mailbox<M> {
    /// Sends `msg` without waiting (what `cast!` calls).
    pub fn cast(&self, msg: M) -> Result<(), MessagingErr<M>> {
        self.depth.fetch_add(1, Ordering::Relaxed);
        let sent = self.actor.cast(msg);
        if sent.is_err() {
            self.depth.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// Sends `msg` without waiting.
    pub fn send_message(&self, msg: M) -> Result<(), MessagingErr<M>> {
        self.cast(msg)
    }

    /// Sends the message `build` makes and waits for its reply (what `call_t!` calls).
    pub async fn call<R, F>(
        &self,
        build: F,
        timeout: Option<std::time::Duration>,
    ) -> Result<CallResult<R>, MessagingErr<M>>
    where
        R: Send + 'static,
        F: FnOnce(RpcReplyPort<R>) -> M,
    {
        self.depth.fetch_add(1, Ordering::Relaxed);
        let result = self.actor.call(build, timeout).await;
        if result.is_err() {
            // Not sent: nothing was queued.
            self.depth.fetch_sub(1, Ordering::Relaxed);
        }
        result
    }

    /// The plain actor reference (sends through it are not counted).
    pub fn actor(&self) -> &ActorRef<M> {
        &self.actor
    }
}

/// A handle on a restartable singleton: always the current incarnation.
pub struct SingletonRef<M: ractor::Message> {
    current: Arc<watch::Sender<Option<ActorRef<M>>>>,
    depth: Arc<watch::Sender<Arc<AtomicI64>>>,
}

impl<M: ractor::Message> Clone for SingletonRef<M> {
    fn clone(&self) -> Self {
        Self {
            current: Arc::clone(&self.current),
            depth: Arc::clone(&self.depth),
        }
    }
}

impl<M: ractor::Message> SingletonRef<M> {
    pub(crate) fn new() -> Self {
        Self {
            current: Arc::new(watch::channel(None).0),
            depth: Arc::new(watch::channel(Arc::new(AtomicI64::new(0))).0),
        }
    }

    /// The live actor, or `None` while it is down (melted down or not yet started).
    pub fn get(&self) -> Option<Mailbox<M>> {
        let actor = self.current.borrow().clone()?;
        Some(Mailbox {
            actor,
            depth: Arc::clone(&self.depth.borrow()),
        })
    }

    /// Messages sent to the current incarnation and not yet taken by its handler (`None`
    /// while it is down).
    pub fn mailbox_depth(&self) -> Option<u64> {
        self.current.borrow().as_ref()?;
        Some(u64::try_from(self.depth.borrow().load(Ordering::Relaxed)).unwrap_or(0))
    }

    /// A receiver that changes on every (re)start; lets tests await a restart.
    pub fn subscribe(&self) -> watch::Receiver<Option<ActorRef<M>>> {
        self.current.subscribe()
    }

    pub(crate) fn set(&self, actor: Option<ActorRef<M>>) {
        if let Some(old) = self.current.borrow().as_ref() {
            DEPTHS.remove(&old.get_id());
        }
        let depth = Arc::new(AtomicI64::new(0));
        if let Some(new) = &actor {
            DEPTHS.insert(new.get_id(), Arc::clone(&depth));
        }
        self.depth.send_replace(depth);
        self.current.send_replace(actor);
    }
}
