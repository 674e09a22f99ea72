//! Calls through the balancer land on every node; a stream token minted by one node is
//! accepted by another, once.

use std::collections::BTreeMap;

use stateset_voice::sim::carrier::CallerScript;

use crate::harness::{Cluster, WAIT, eventually, token_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_placed_through_the_balancer_spread_over_the_nodes() {
    let cluster = Cluster::start(3, &[]).await;
    let t = cluster.tenant("+14155550101", 100).await;
    let sids = cluster
        .greeted_calls(&t, 9, "+1555000", CallerScript::default)
        .await;

    // Each call is held by the node its media stream runs on (`calls.node_id`).
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for sid in &sids {
        let node = cluster.node_of(sid).await.expect("the call's node");
        *per_node.entry(node).or_default() += 1;
    }
    println!("cluster figures: 9 calls through the balancer per node: {per_node:?}");
    assert_eq!(
        per_node.keys().cloned().collect::<Vec<_>>(),
        vec!["node1", "node2", "node3"],
        "every node holds calls: {per_node:?}"
    );

    for sid in &sids {
        cluster.carrier.hangup(sid).expect("hang up");
    }
    for sid in &sids {
        let done = eventually(WAIT, || async { cluster.completion_of(sid).await }).await;
        assert!(done.is_some(), "{sid} completes after the hang-up");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_token_minted_by_one_node_is_accepted_by_another_and_only_once() {
    let cluster = Cluster::start(3, &[]).await;
    let t = cluster.tenant("+14155550102", 100).await;

    // node1 admits the call and mints the token.
    let node1 = cluster.nodes[0].url("");
    let (sid, status, twiml) = cluster.incoming_call(&node1, &t, "+15550000001").await;
    assert_eq!(status, 200, "{twiml}");
    assert_eq!(cluster.node_of(&sid).await.as_deref(), Some("node1"));
    let token = token_of(&twiml);

    // node2 verifies it (same secret) and consumes its nonce: the call is now its own.
    let node2 = cluster.nodes[1].url("");
    let stream = cluster.start_stream(&node2, &t, &sid, &token).await;
    let moved = eventually(WAIT, || async {
        let node = cluster.node_of(&sid).await;
        let live = cluster
            .sessions_of(&sid)
            .await
            .iter()
            .any(|(status, _)| status == "active");
        (node.as_deref() == Some("node2") && live).then_some(())
    })
    .await;
    assert!(moved.is_some(), "the stream runs on node2");

    // node3 refuses the same token: the nonce is consumed in the shared database.
    let node3 = cluster.nodes[2].url("");
    let mut again = cluster.start_stream(&node3, &t, &sid, &token).await;
    assert_eq!(
        crate::harness::close_frame(&mut again).await,
        (1008, "reused".to_owned())
    );
    assert_eq!(cluster.node_of(&sid).await.as_deref(), Some("node2"));

    // The caller hangs up: the stream ends on node2 and the call completes.
    drop(stream);
    let completed = eventually(WAIT, || async {
        let live = cluster
            .sessions_of(&sid)
            .await
            .iter()
            .any(|(status, _)| status == "active");
        (!live).then_some(())
    })
    .await;
    assert!(completed.is_some(), "the leg on node2 ends");
    cluster.stop().await;
}
