//! A newcomer's first session: sign in, place the demo call, watch it in the live table and
//! its transcript as it happens, open its detail and evaluation once it ends, work the
//! callback task it left, then the admin pages (readiness, rollouts, evaluation chart) and
//! the webhook deliveries with a redelivery.

use fantoccini::key::Key;
use serde_json::json;
use stateset_voice::sandbox;

use crate::harness::{ADMIN_KEY, Browser, Console, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_the_demo_call_live_then_works_its_callback_task() {
    let console = Console::start().await;
    let b = Browser::open("journey").await;
    b.sign_in(&console.base, &console.api_key, ADMIN_KEY, "Ada Operator")
        .await;
    b.wait_page("live").await;
    assert_eq!(b.count("#live-table tr[data-call-id]").await, 0);

    // The demo call, placed through the API, appears in the live table.
    let (status, placed) = console
        .post("/api/v1/make-call", json!({"to": sandbox::CALLEE}))
        .await;
    assert_eq!(status, 201, "{placed}");
    let call_id = placed["call_id"].as_str().expect("call id").to_owned();
    let call_sid = placed["call_sid"].as_str().expect("call sid").to_owned();
    let row = format!("#live-table tr[data-call-id=\"{call_id}\"]");
    b.wait(&row).await;
    b.wait_text("#live-count", "1").await;
    assert_eq!(
        b.text(&format!("{row} td[data-col=\"direction\"]")).await,
        "outbound"
    );
    // Numbers are masked by default, shown on request.
    let to = b.text(&format!("{row} td[data-col=\"to\"]")).await;
    assert!(
        !to.contains(sandbox::CALLEE) && to.contains('•'),
        "masked: {to}"
    );
    b.click("#live-unmask").await;
    b.wait_text(&format!("{row} td[data-col=\"to\"]"), sandbox::CALLEE)
        .await;
    b.click("#live-unmask").await;
    b.wait_until(
        &format!("{row} td[data-col=\"to\"]"),
        "el.textContent.includes('•')",
    )
    .await;
    // The duration ticks.
    b.wait_until(
        &format!("{row} td[data-col=\"duration\"]"),
        "/[1-9]/.test(el.textContent)",
    )
    .await;

    // Opened from the keyboard, the live transcript shows the turns as they are spoken,
    // the tool call inline, and the call's end.
    let watch = b
        .wait(&format!("{row} button[data-action=\"watch\"]"))
        .await;
    watch
        .send_keys(&Key::Enter.to_string())
        .await
        .expect("enter");
    let panel = format!("section#live-transcript[data-call-id=\"{call_id}\"]");
    b.wait(&panel).await;
    b.wait(&format!("{panel} .turn[data-role=\"assistant\"]"))
        .await;
    b.wait_text(&format!("{panel} .turn[data-role=\"user\"]"), "A1234")
        .await;
    b.wait(&format!("{panel} .tool-call[data-name=\"order_status\"]"))
        .await;
    b.wait_text(
        &format!("{panel} .tool-call[data-name=\"order_status\"]"),
        "shipped",
    )
    .await;
    b.screenshot("live-transcript").await;
    b.wait(&format!(
        "{panel} .tool-call[data-name=\"transfer_to_human\"]"
    ))
    .await;
    b.wait(&format!("{panel} #live-transcript-ended")).await;
    // The call has left the live table.
    b.wait_js(&format!("document.querySelector({}) === null", json!(row)))
        .await;
    let ended = tokio::time::timeout(WAIT, console.sims.carrier.wait_ended(&call_sid))
        .await
        .expect("the call ended at the carrier");
    assert!(ended.media.media_received > 0);

    // Its detail: transcript, tool calls, the handoff, and the evaluation with its criteria
    // (the page shows the evaluation once it is written).
    b.click(&format!("{panel} #live-transcript-ended a")).await;
    b.wait_page("call").await;
    b.wait_js("document.querySelectorAll('#detail-transcript .turn').length >= 5")
        .await;
    b.wait("#detail-function-calls .function-call[data-name=\"order_status\"]")
        .await;
    b.wait_text("#detail-handoff", sandbox::QUEUE).await;
    b.wait("#detail-evaluation .criterion[data-criterion][data-verdict]")
        .await;
    b.wait_js("document.querySelectorAll('#detail-events li, #detail-events tr').length > 0")
        .await;
    b.screenshot("call-detail").await;

    // The callback task the call left: claimed, then completed with an outcome.
    b.click("nav#nav a[href=\"#/callbacks\"]").await;
    b.wait_page("callbacks").await;
    let task = b.wait("#callbacks-table tr[data-task-id]").await;
    let task_id = task
        .attr("data-task-id")
        .await
        .expect("attr")
        .expect("task id");
    let task_row = format!("#callbacks-table tr[data-task-id=\"{task_id}\"]");
    b.click(&format!("{task_row} button[data-action=\"claim\"]"))
        .await;
    b.wait_text(
        &format!("{task_row} td[data-col=\"claimed-by\"]"),
        "Ada Operator",
    )
    .await;
    b.screenshot("callbacks").await;
    b.click(&format!("{task_row} button[data-action=\"complete\"]"))
        .await;
    b.wait("dialog#complete-dialog[open]").await;
    // An outcome is required: the dialog says so and stays open.
    b.click("#complete-submit").await;
    b.wait_until(
        "dialog#complete-dialog[open]",
        "el.textContent.includes('outcome')",
    )
    .await;
    b.fill(
        "#complete-outcome",
        "Order status confirmed, customer happy",
    )
    .await;
    b.click("#complete-submit").await;
    b.wait_js("!document.querySelector('dialog#complete-dialog[open]')")
        .await;
    let (_, stored) = console
        .get(&format!("/api/v1/callback-tasks/{task_id}"))
        .await;
    assert_eq!(stored["status"], "completed", "{stored}");
    assert_eq!(
        stored["outcome"], "Order status confirmed, customer happy",
        "{stored}"
    );

    // The admin pages: readiness gates, rollout governance, the evaluation chart.
    b.click("nav#nav a[href=\"#/admin/readiness\"]").await;
    b.wait_page("readiness").await;
    b.wait(".gate[data-gate][data-status]").await;
    b.screenshot("readiness").await;
    b.click("nav#nav a[href=\"#/admin/rollouts\"]").await;
    b.wait_page("rollouts").await;
    b.screenshot("rollouts").await;
    b.click("nav#nav a[href=\"#/admin/evaluations\"]").await;
    b.wait_page("evaluations").await;
    b.wait("svg#pass-rate-chart").await;
    b.screenshot("evaluations").await;

    // Webhook deliveries, one redelivered.
    b.click("nav#nav a[href=\"#/webhooks\"]").await;
    b.wait_page("webhooks").await;
    let delivery = b.wait("#deliveries-table tr[data-delivery-id]").await;
    let delivery_id = delivery
        .attr("data-delivery-id")
        .await
        .expect("attr")
        .expect("delivery id");
    b.screenshot("webhooks").await;
    let (_, before) = console
        .get(&format!("/api/v1/webhook-deliveries/{delivery_id}"))
        .await;
    b.click(&format!(
        "#deliveries-table tr[data-delivery-id=\"{delivery_id}\"] button[data-action=\"redeliver\"]"
    ))
    .await;
    b.wait_text("#deliveries-message", "queued again").await;
    // The redelivery is a new attempt of the same delivery, which the receiver gets.
    let (_, after) = console
        .get(&format!("/api/v1/webhook-deliveries/{delivery_id}"))
        .await;
    assert_ne!(
        before, after,
        "the redelivery changed the delivery: {after}"
    );
    b.close().await;
}
