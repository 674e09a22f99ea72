//! The loss of a node. `kill -9`: another node reconciles its calls once its heartbeat is
//! stale, and none is left open. SIGTERM: the node hands its live calls, through the
//! carrier, to fresh streams the balancer sends to the other nodes, and the conversations
//! go on there.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use stateset_voice::sim::carrier::CallerScript;

use crate::harness::{Cluster, Tenant, WAIT, eventually};

/// A caller who speaks a short sentence every four seconds for `length`, then hangs up.
fn talking_caller(length: Duration) -> CallerScript {
    let mut script = CallerScript::default().silence(Duration::from_secs(2));
    let mut t = Duration::from_secs(2);
    let mut turn = 0;
    while t + Duration::from_secs(4) < length {
        turn += 1;
        script = script
            .speak(Duration::from_millis(800), format!("caller turn {turn}"))
            .silence(Duration::from_millis(3200));
        t += Duration::from_secs(4);
    }
    script
        .silence(length.saturating_sub(t))
        .hang_up()
        .with_max_duration(length + Duration::from_secs(30))
}

/// Places `n` calls through the balancer and waits until the agent greeted each; the calls
/// grouped by the node holding them.
async fn live_calls(cluster: &Cluster, t: &Tenant, n: usize) -> BTreeMap<String, Vec<String>> {
    let sids = cluster
        .greeted_calls(t, n, "+1555200", || talking_caller(Duration::from_secs(90)))
        .await;
    let mut per_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for sid in sids {
        let node = cluster.node_of(&sid).await.expect("the call's node");
        per_node.entry(node).or_default().push(sid);
    }
    per_node
}

/// The node holding the most calls, and its calls.
fn busiest(per_node: &BTreeMap<String, Vec<String>>) -> (String, Vec<String>) {
    per_node
        .iter()
        .max_by_key(|(_, sids)| sids.len())
        .map(|(node, sids)| (node.clone(), sids.clone()))
        .expect("calls on some node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_calls_are_reconciled_by_another_node_within_30_s() {
    let mut cluster = Cluster::start(3, &[]).await;
    let t = cluster.tenant("+14155550104", 100).await;
    let per_node = live_calls(&cluster, &t, 6).await;
    let (victim, lost) = busiest(&per_node);
    let others: Vec<String> = per_node
        .iter()
        .filter(|(node, _)| **node != victim)
        .flat_map(|(_, sids)| sids.clone())
        .collect();

    cluster.node(&victim).kill().await;
    let killed = Instant::now();
    // None of its calls stays open: each completes, with no voice session left active.
    let reconciled = eventually(Duration::from_secs(30), || async {
        for sid in &lost {
            cluster.completion_of(sid).await?;
            if cluster
                .sessions_of(sid)
                .await
                .iter()
                .any(|(status, _)| status == "active")
            {
                return None;
            }
        }
        Some(killed.elapsed())
    })
    .await;
    let Some(elapsed) = reconciled else {
        let mut states = Vec::new();
        for sid in &lost {
            states.push((
                cluster.completion_of(sid).await,
                cluster.sessions_of(sid).await,
            ));
        }
        panic!("the calls of {victim} are not all reconciled within 30 s: {states:?}");
    };
    let mut fates = Vec::new();
    for sid in &lost {
        let outcome = cluster.completion_of(sid).await.flatten();
        let sessions = cluster.sessions_of(sid).await;
        assert!(
            sessions
                .iter()
                .any(|(_, reason)| reason.as_deref() == Some("node_lost")),
            "{sid}: the lost leg is recorded node_lost: {sessions:?}"
        );
        // The caller was not left on a dead line: the carrier asked `stream-ended` through
        // the balancer, a live node answered with the route's fallback.
        let snapshot = cluster.carrier.call(sid).expect("the call");
        assert!(
            snapshot
                .said
                .contains(&"Connecting you to our team.".to_owned()),
            "{sid}: the caller hears the fallback: {:?}",
            snapshot.said
        );
        fates.push((outcome, sessions));
    }
    println!(
        "cluster figures: kill -9 of {victim} with {} live calls: all reconciled {} ms after the kill: {fates:?}",
        lost.len(),
        elapsed.as_millis()
    );
    // The other nodes' calls go on.
    for sid in &others {
        assert_eq!(
            cluster.completion_of(sid).await,
            None,
            "{sid} is still live"
        );
        let snapshot = cluster.carrier.call(sid).expect("the call");
        assert!(!snapshot.status.is_final(), "{sid} is still live");
    }
    for sid in &others {
        cluster.carrier.hangup(sid).expect("hang up");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_s_calls_continue_on_the_other_nodes() {
    let mut cluster = Cluster::start(3, &[]).await;
    let t = cluster.tenant("+14155550105", 100).await;
    let per_node = live_calls(&cluster, &t, 6).await;
    let (victim, handed) = busiest(&per_node);

    cluster.node(&victim).terminate();
    let terminated = Instant::now();
    // New calls while the node drains, before the balancer's checks took it out of
    // rotation: whatever node the balancer picks, each call is admitted by a node that is
    // not draining (the draining one answers 503 and the balancer retries elsewhere).
    let ready = cluster.node(&victim).url("/health/ready");
    let draining = eventually(WAIT, || async {
        let resp = cluster.client.get(&ready).send().await.ok()?;
        (resp.status() == 503).then_some(())
    })
    .await;
    assert!(draining.is_some(), "{victim} reports itself draining");
    let public = cluster.public.clone();
    let burst = (0..6).map(|i| {
        let cluster = &cluster;
        let (t, public) = (&t, &public);
        async move {
            cluster
                .incoming_call(public, t, &format!("+1555300{i:04}"))
                .await
        }
    });
    for (sid, status, twiml) in futures::future::join_all(burst).await {
        assert_eq!(status, 200, "{twiml}");
        assert!(twiml.contains("<Stream"), "admitted: {twiml}");
        let node = cluster.node_of(&sid).await.expect("the call's node");
        assert_ne!(node, victim, "a draining node admitted a new call");
    }
    // Each call gets a fresh stream on another node, which takes the conversation on.
    let resumed = eventually(WAIT, || async {
        for sid in &handed {
            let snapshot = cluster.carrier.call(sid)?;
            if snapshot.media.streams_opened < 2 {
                return None;
            }
            let node = cluster.node_of(sid).await?;
            if node == victim {
                return None;
            }
            let sessions = cluster.sessions_of(sid).await;
            if sessions.last().map(|(status, _)| status.as_str()) != Some("active") {
                return None;
            }
        }
        Some(terminated.elapsed())
    })
    .await
    .expect("every handed call resumes on another node");
    let code = cluster.node(&victim).exited(WAIT).await;
    assert_eq!(code, Some(0), "the drained node exits cleanly");

    // The transcript goes on in the new legs; the first legs ended `drained`; nothing
    // completed the calls and the carrier never heard an application error.
    for sid in &handed {
        let more = eventually(WAIT, || async {
            (cluster.live_leg_turns(sid).await > 0).then_some(())
        })
        .await;
        assert!(
            more.is_some(),
            "{sid}: the transcript continues in the new leg"
        );
        let sessions = cluster.sessions_of(sid).await;
        assert_eq!(
            sessions,
            vec![
                ("completed".to_owned(), Some("drained".to_owned())),
                ("active".to_owned(), None),
            ],
            "{sid}"
        );
        assert_eq!(
            cluster.completion_of(sid).await,
            None,
            "{sid} is still live"
        );
        let snapshot = cluster.carrier.call(sid).expect("the call");
        assert!(!snapshot.status.is_final(), "{sid} is still live");
        assert!(
            snapshot.said.is_empty(),
            "{sid}: no fallback message: {:?}",
            snapshot.said
        );
    }
    println!(
        "cluster figures: SIGTERM of {victim} with {} live calls (grace 1 s): all resumed on other nodes {} ms after the signal",
        handed.len(),
        resumed.as_millis()
    );
    for sids in per_node.values() {
        for sid in sids {
            cluster.carrier.hangup(sid).expect("hang up");
        }
    }
    cluster.stop().await;
}
