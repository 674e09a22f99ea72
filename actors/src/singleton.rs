//! `SingletonRef`: the handle on a restartable singleton actor that always points at its
//! current incarnation. The root supervisor updates it on every (re)start, so nobody holds
//! an `ActorRef` that could go stale. It lives apart from the supervisor so that the actors
//! it points at can hold one without importing the supervision tree.

use std::sync::Arc;

use ractor::ActorRef;
use tokio::sync::watch;

/// A handle on a restartable singleton: always the current incarnation.
pub struct SingletonRef<M: ractor::Message> {
    current: Arc<watch::Sender<Option<ActorRef<M>>>>,
}

impl<M: ractor::Message> Clone for SingletonRef<M> {
    fn clone(&self) -> Self {
        Self {
            current: Arc::clone(&self.current),
        }
    }
}

impl<M: ractor::Message> SingletonRef<M> {
    pub(crate) fn new() -> Self {
        Self {
            current: Arc::new(watch::channel(None).0),
        }
    }

    /// The live actor, or `None` while it is down (melted down or not yet started).
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.current.borrow().clone()
    }

    /// A receiver that changes on every (re)start; lets tests await a restart.
    pub fn subscribe(&self) -> watch::Receiver<Option<ActorRef<M>>> {
        self.current.subscribe()
    }

    pub(crate) fn set(&self, actor: Option<ActorRef<M>>) {
        self.current.send_replace(actor);
    }
}
