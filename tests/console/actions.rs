//! The live transcript's actions, each behind a confirmation: hanging up a call (a refusal
//! of the confirmation leaves it live) and transferring one to a queue (the handoff is on its
//! record).

use serde_json::json;
use stateset_voice::sandbox;

use crate::harness::{Browser, Console, WAIT};

/// Places the demo call and opens its live transcript; the call's id and sid.
async fn watch_new_call(console: &Console, b: &Browser) -> (String, String) {
    let (status, placed) = console
        .post("/api/v1/make-call", json!({"to": sandbox::CALLEE}))
        .await;
    assert_eq!(status, 201, "{placed}");
    let call_id = placed["call_id"].as_str().expect("call id").to_owned();
    let call_sid = placed["call_sid"].as_str().expect("call sid").to_owned();
    b.click(&format!(
        "#live-table tr[data-call-id=\"{call_id}\"] button[data-action=\"watch\"]"
    ))
    .await;
    // The greeting has been spoken: the call is up.
    b.wait(&format!(
        "section#live-transcript[data-call-id=\"{call_id}\"] .turn[data-role=\"assistant\"]"
    ))
    .await;
    (call_id, call_sid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_hangs_up_one_call_and_transfers_another_after_confirming() {
    let console = Console::start().await;
    let b = Browser::open("actions").await;
    b.sign_in(&console.base, &console.api_key, "", "Ada").await;
    b.wait_page("live").await;

    // Hang up: declined first (the call stays live), then confirmed.
    let (call_id, call_sid) = watch_new_call(&console, &b).await;
    b.click("#hangup").await;
    b.wait("dialog#confirm[open]").await;
    b.screenshot("confirm-hangup").await;
    b.click("#confirm-no").await;
    b.wait_js("!document.querySelector('dialog#confirm[open]')")
        .await;
    let (_, live) = console
        .get(&format!("/api/v1/active-sessions/calls/{call_id}"))
        .await;
    assert_eq!(live["call_id"], call_id.as_str(), "still live: {live}");
    b.click("#hangup").await;
    b.wait("dialog#confirm[open]").await;
    b.click("#confirm-yes").await;
    b.wait_until("#action-result", "el.textContent.trim().length > 0")
        .await;
    b.wait("#live-transcript-ended").await;
    tokio::time::timeout(WAIT, console.sims.carrier.wait_ended(&call_sid))
        .await
        .expect("the carrier hung up");
    let (_, log) = console.get(&format!("/api/v1/call-logs/{call_id}")).await;
    assert_ne!(log["status"], "in_progress", "{log}");

    // Transfer to the `support` queue: the call is handed off there.
    let (call_id, call_sid) = watch_new_call(&console, &b).await;
    b.wait_js(&format!(
        "Array.from(document.querySelectorAll('#transfer-queue option')).some((o) => o.textContent.includes({}))",
        json!(sandbox::QUEUE)
    ))
    .await;
    let select = b.wait("#transfer-queue").await;
    select
        .select_by_label(sandbox::QUEUE)
        .await
        .expect("choose the queue");
    b.click("#transfer").await;
    b.wait("dialog#confirm[open]").await;
    b.click("#confirm-yes").await;
    b.wait("#live-transcript-ended").await;
    tokio::time::timeout(WAIT, console.sims.carrier.wait_ended(&call_sid))
        .await
        .expect("the transferred call ended at the carrier");
    let (_, sessions) = console
        .get(&format!("/api/v1/voice-sessions?call_id={call_id}"))
        .await;
    let session_id = sessions["data"][0]["id"]
        .as_str()
        .expect("session")
        .to_owned();
    let (_, session) = console
        .get(&format!("/api/v1/voice-sessions/{session_id}"))
        .await;
    assert_eq!(session["handoffs"][0]["queue"], sandbox::QUEUE, "{session}");
    b.close().await;
}
