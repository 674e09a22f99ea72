//! The root supervisor by message: a singleton that panics is counted as a failure and
//! rebuilt from its child spec (a new incarnation behind the same `SingletonRef`); one that
//! is killed is counted as a termination and rebuilt; past the restart limit in the window
//! the root melts down — it stops rebuilding that child and reports itself unhealthy.

use std::time::Duration;

use actors::notifier::NotifierMsg;
use actors::supervisor::{RootMsg, SupervisorStatus};
use actors::telephony::PlacementSettings;
use ractor::{ActorRef, call_t};

use crate::support::{self, Tree};

async fn status(tree: &Tree) -> SupervisorStatus {
    call_t!(tree.actors.root, RootMsg::Status, 5_000).expect("root answers")
}

/// Waits for the notifier's next incarnation after `old` (a supervision event, awaited).
async fn next_notifier(tree: &Tree, old: &ActorRef<NotifierMsg>) -> ActorRef<NotifierMsg> {
    let mut changes = tree.actors.notifier.subscribe();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(current) = changes.borrow_and_update().clone()
                && current.get_id() != old.get_id()
            {
                return current;
            }
            changes.changed().await.expect("root alive");
        }
    })
    .await
    .expect("the notifier is rebuilt")
}

fn notifier_of(status: &SupervisorStatus) -> &actors::supervisor::ChildStatus {
    status
        .children
        .iter()
        .find(|c| c.kind == "notifier")
        .expect("the notifier is a child of the root")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_singleton_is_counted_rebuilt_and_past_its_limit_melts_the_root_down() {
    let tree = support::start_with(PlacementSettings::default(), |config| {
        config.calls.chaos = true;
        config.max_restarts = 2;
        config.restart_window = Duration::from_secs(600);
    })
    .await;
    let mut health = tree.actors.health.clone();
    assert!(*health.borrow_and_update());
    let first = tree.actors.notifier.actor().expect("notifier running");

    // A panic: counted as a failure, the actor rebuilt behind the same handle.
    first.cast(NotifierMsg::Crash).expect("cast");
    let second = next_notifier(&tree, &first).await;
    let after_panic = status(&tree).await;
    let notifier = notifier_of(&after_panic);
    assert_eq!((notifier.failures, notifier.terminations), (1, 0));
    assert_eq!(notifier.restarts, 1);
    assert!(notifier.alive);
    assert!(
        notifier
            .last_failure
            .as_deref()
            .is_some_and(|f| f.contains("chaos hook")),
        "{notifier:?}"
    );
    assert!(after_panic.healthy);

    // A kill: counted as a termination, rebuilt too.
    second.kill();
    let third = next_notifier(&tree, &second).await;
    let after_kill = status(&tree).await;
    let notifier = notifier_of(&after_kill);
    assert_eq!((notifier.failures, notifier.terminations), (1, 1));
    assert_eq!(notifier.restarts, 2);
    assert!(after_kill.healthy);

    // A third end within the window is over the limit: no rebuild, the root melts down.
    third.cast(NotifierMsg::Crash).expect("cast");
    tokio::time::timeout(Duration::from_secs(10), async {
        while *health.borrow_and_update() {
            health.changed().await.expect("root alive");
        }
    })
    .await
    .expect("the root reports the meltdown");
    let melted = status(&tree).await;
    assert!(!melted.healthy);
    assert!(
        melted
            .meltdown
            .as_deref()
            .is_some_and(|m| m.contains("notifier")),
        "{melted:?}"
    );
    let notifier = notifier_of(&melted);
    assert!(!notifier.alive);
    assert_eq!(notifier.restarts, 2, "no restart past the limit");
    assert!(tree.actors.notifier.actor().is_none());
    // The other singletons are untouched.
    assert!(
        melted
            .children
            .iter()
            .filter(|c| c.kind != "notifier")
            .all(|c| c.alive && c.failures == 0 && c.restarts == 0),
        "{melted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evaluation_actor_is_a_supervised_singleton() {
    let tree = support::start(PlacementSettings::default()).await;
    let evaluations = &tree.actors.evaluations;
    let first = evaluations.actor().expect("evaluation actor running");
    let mut changes = evaluations.subscribe();
    first.kill();
    let second = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(current) = changes.borrow_and_update().clone()
                && current.get_id() != first.get_id()
            {
                return current;
            }
            changes.changed().await.expect("root alive");
        }
    })
    .await
    .expect("the evaluation actor is rebuilt");
    assert_eq!(
        evaluations.actor().map(|a| a.get_id()),
        Some(second.get_id())
    );
    let status = status(&tree).await;
    let child = status
        .children
        .iter()
        .find(|c| c.kind == "evaluation")
        .expect("the evaluation actor is a child of the root");
    assert!(child.alive);
    assert_eq!((child.terminations, child.restarts), (1, 1), "{child:?}");
    assert!(status.healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chaos_hook_does_nothing_when_chaos_is_off() {
    let tree = support::start(PlacementSettings::default()).await;
    let notifier = tree.actors.notifier.actor().expect("notifier running");
    notifier.cast(NotifierMsg::Crash).expect("cast");
    // The actor still answers (a panic would have replaced it): a read through its mailbox.
    let tenant = actors::ids::TenantId::generate();
    let page = call_t!(
        notifier,
        NotifierMsg::List,
        5_000,
        actors::store::DeliveryFilter {
            tenant_id: tenant,
            status: None,
            event: None,
            event_id: None,
            limit: 10,
            offset: 0,
        }
    )
    .expect("the same incarnation answers");
    assert!(page.expect("list").items.is_empty());
    let status = status(&tree).await;
    let child = notifier_of(&status);
    assert_eq!((child.failures, child.restarts), (0, 0));
}
