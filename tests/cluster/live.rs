//! Live views across processes: every node lists every node's live calls, and an SSE client
//! connected to one node sees the calls of the others start and end (PostgreSQL
//! `LISTEN/NOTIFY` between the processes).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use stateset_voice::sim::carrier::CallerScript;

use crate::harness::{Cluster, WAIT, eventually};
use crate::sse::{Event, Sse};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_lists_and_streams_the_live_calls_of_every_node() {
    let cluster = Cluster::start(3, &[]).await;
    let t = cluster.tenant("+14155550104", 100).await;
    let key = cluster.api_key(&t).await;

    // An operator's live view on node1 only.
    let resp = cluster
        .client
        .get(cluster.nodes[0].url("/api/v1/active-sessions/stream"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("sse");
    assert_eq!(resp.status(), 200);
    let mut sse = Sse::new(resp);

    let sids = cluster
        .greeted_calls(&t, 6, "+1555001", CallerScript::default)
        .await;
    let mut held: BTreeMap<String, String> = BTreeMap::new();
    for sid in &sids {
        held.insert(sid.clone(), cluster.node_of(sid).await.expect("its node"));
    }
    assert!(
        held.values().any(|n| n != "node1"),
        "some calls run on other nodes: {held:?}"
    );

    // Every node lists all six, each with the node that holds it.
    for node in &cluster.nodes {
        let listed = eventually(WAIT, || async {
            let resp = cluster
                .client
                .get(node.url("/api/v1/active-sessions"))
                .bearer_auth(&key)
                .send()
                .await
                .ok()?;
            let body: Value = resp.json().await.ok()?;
            let calls: BTreeMap<String, String> = body["data"]
                .as_array()?
                .iter()
                .map(|c| {
                    (
                        c["call_sid"].as_str().unwrap_or_default().to_owned(),
                        c["node_id"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            (calls == held).then_some(calls)
        })
        .await;
        assert!(
            listed.is_some(),
            "{} lists every live call of the cluster",
            node.id
        );
    }

    // node1's stream saw every call start, wherever it runs …
    let wanted: BTreeSet<String> = sids.iter().cloned().collect();
    let mut started = BTreeSet::new();
    tokio::time::timeout(WAIT, async {
        while started != wanted {
            let Event { name, data, .. } = sse.next().await;
            if name == "started" {
                started.insert(data["call_sid"].as_str().unwrap_or_default().to_owned());
            }
        }
    })
    .await
    .expect("node1's stream sees every call start");

    // … and end.
    let ids: BTreeSet<String> = {
        let mut ids = BTreeSet::new();
        for sid in &sids {
            let id: String = sqlx::query_scalar("SELECT id FROM calls WHERE call_sid = $1")
                .bind(sid)
                .fetch_one(&cluster.db)
                .await
                .expect("call id");
            ids.insert(id);
        }
        ids
    };
    for sid in &sids {
        cluster.carrier.hangup(sid).expect("hang up");
    }
    let mut ended = BTreeSet::new();
    tokio::time::timeout(WAIT, async {
        while ended != ids {
            let Event { name, data, .. } = sse.next().await;
            if name == "ended" {
                ended.insert(data["call_id"].as_str().unwrap_or_default().to_owned());
            }
        }
    })
    .await
    .expect("node1's stream sees every call end");
    drop(sse);
    cluster.stop().await;
}
