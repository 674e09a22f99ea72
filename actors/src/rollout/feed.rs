//! [`RolloutFeed`]: the evaluation sink that hands every recorded result to the rollout
//! actor. `evaluated` only casts (never waits): a result arriving while the actor restarts
//! is lost to the feed, and the actor's timer checks every canary anyway.

use std::sync::Arc;

use super::RolloutMsg;
use crate::evaluation::{EvaluationNotice, EvaluationSink};
use crate::singleton::SingletonRef;

/// Forwards evaluation notices to the current rollout actor.
#[derive(Clone)]
pub struct RolloutFeed {
    actor: SingletonRef<RolloutMsg>,
}

impl RolloutFeed {
    /// The sink for `EvaluationArgs.sink`, feeding the rollout actor behind `actor`
    /// (`Actors.rollout`).
    pub fn sink(actor: SingletonRef<RolloutMsg>) -> Arc<dyn EvaluationSink> {
        Arc::new(Self { actor })
    }
}

impl EvaluationSink for RolloutFeed {
    fn evaluated(&self, notice: &EvaluationNotice) {
        if let Some(actor) = self.actor.get()
            && actor.cast(RolloutMsg::Evaluated(notice.clone())).is_err()
        {
            tracing::debug!("rollout actor stopped; its timer will check the canary");
        }
    }
}
