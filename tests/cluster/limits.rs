//! Admission across nodes: a tenant's concurrency limit counts the live calls of every node
//! in the shared database, so simultaneous attempts on three nodes admit exactly the limit.

use futures::future::join_all;

use crate::harness::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_limit_of_10_admits_exactly_10_of_30_simultaneous_calls_over_3_nodes() {
    let cluster = Cluster::start(3, &[]).await;
    let t = cluster.tenant("+14155550103", 10).await;
    let bases: Vec<String> = cluster.nodes.iter().map(|n| n.url("")).collect();

    // 30 calls at once, 10 to each node directly (signed over the public URL).
    let attempts = (0..30).map(|i| {
        let base = &bases[i % bases.len()];
        let from = format!("+1555100{i:04}");
        let cluster = &cluster;
        let t = &t;
        async move { cluster.incoming_call(base, t, &from).await }
    });
    let answers = join_all(attempts).await;
    for (_, status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let admitted = answers
        .iter()
        .filter(|(_, _, body)| body.contains("<Stream"))
        .count();
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM calls WHERE tenant_id = $1 AND completed_at IS NULL",
    )
    .bind(&t.id)
    .fetch_one(&cluster.db)
    .await
    .expect("live calls");
    println!(
        "cluster figures: tenant limit 10, 30 simultaneous attempts on 3 nodes: {admitted} admitted, {live} live in the database"
    );
    assert_eq!(admitted, 10, "exactly the limit is admitted");
    assert_eq!(live, 10, "exactly the limit is live");
    cluster.stop().await;
}
