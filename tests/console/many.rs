//! The live table at 1,000 live calls: paged (50 rows a page, newest first), counted, and
//! kept current by the stream's deltas — a call that ends leaves, a call that changes state
//! shows it — without reloading the page. The calls are published into the cluster's
//! live registry as the server's node publishes its own.

use actors::active::CallPhase;
use actors::active::coalesce::{Change, Op};
use actors::ids::{CallId, TenantId};
use actors::time::now_ms;

use crate::harness::{Browser, Console};

const CALLS: usize = 1_000;

fn live_call(tenant: &TenantId, i: usize, now: i64) -> actors::active::ActiveCall {
    actors::active::ActiveCall {
        call_id: CallId::generate(),
        call_sid: format!("CA{i:032}"),
        stream_sid: Some(format!("MZ{i:032}")),
        tenant_id: tenant.clone(),
        direction: "inbound",
        from: format!("+1555{i:07}"),
        to: "+15005550006".into(),
        agent_key: Some("demo".into()),
        agent_version_id: None,
        // One second apart: call 0 is the newest.
        started_at: now - i64::try_from(i).expect("small") * 1_000,
        phase: CallPhase::Listening,
        last_line: None,
        first_audio_ms: Some(200),
        last_response_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_table_pages_a_thousand_calls_and_applies_deltas() {
    let console = Console::start().await;
    let b = Browser::open("many").await;
    b.sign_in(&console.base, &console.api_key, "", "Ada").await;
    b.wait_page("live").await;

    let tenant = TenantId::parse(&console.tenant_id).expect("tenant id");
    let node = console.state.nodes.instance().clone();
    let now = now_ms();
    let calls: Vec<_> = (0..CALLS).map(|i| live_call(&tenant, i, now)).collect();
    let changes: Vec<Change> = calls
        .iter()
        .map(|c| Change {
            call_id: c.call_id.clone(),
            op: Op::Started(c.clone()),
            at: now,
        })
        .collect();
    console
        .state
        .store
        .publish_live(&node, &changes)
        .await
        .expect("publish");

    // Counted in full, rendered a page at a time, newest first.
    b.wait_until("#live-count", "/1[,.\\s]?000/.test(el.textContent)")
        .await;
    let rows = "#live-table tr[data-call-id]";
    assert_eq!(b.count(rows).await, 50);
    let first = |c: &actors::active::ActiveCall| {
        format!("#live-table tr[data-call-id=\"{}\"]", c.call_id.as_str())
    };
    b.wait(&first(&calls[0])).await;
    b.screenshot("live-1000").await;
    b.click("#live-page-next").await;
    b.wait(&first(&calls[50])).await;
    assert_eq!(b.count(rows).await, 50);
    assert_eq!(
        b.count(&first(&calls[0])).await,
        0,
        "page 2 shows calls 50–99"
    );
    b.click("#live-page-prev").await;
    b.wait(&first(&calls[0])).await;

    // Deltas: call 1 ends (it leaves, 999 remain), call 2 runs a tool.
    let mut busy = calls[2].clone();
    busy.phase = CallPhase::Tool;
    let later = now_ms();
    console
        .state
        .store
        .publish_live(
            &node,
            &[
                Change {
                    call_id: calls[1].call_id.clone(),
                    op: Op::Ended {
                        tenant_id: tenant.clone(),
                        reason: "ended".into(),
                    },
                    at: later,
                },
                Change {
                    call_id: busy.call_id.clone(),
                    op: Op::Updated(busy.clone()),
                    at: later,
                },
            ],
        )
        .await
        .expect("publish");
    b.wait_until("#live-count", "/999/.test(el.textContent)")
        .await;
    b.wait_js(&format!(
        "document.querySelector({}) === null",
        serde_json::json!(first(&calls[1]))
    ))
    .await;
    b.wait_text(&format!("{} td[data-col=\"state\"]", first(&busy)), "tool")
        .await;
    assert_eq!(b.count(rows).await, 50, "the page is refilled");
    b.close().await;
}
