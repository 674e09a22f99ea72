//! Callback work is exclusive: two operators on the same task, one wins and the other is
//! told who has it; a cancelled task records the reason.

use serde_json::json;
use stateset_voice::sandbox;

use crate::harness::{Browser, Console};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_claim_one_task_and_one_wins() {
    let console = Console::start().await;
    let (status, task) = console
        .post(
            "/api/v1/callback-tasks",
            json!({"phone": sandbox::CALLEE, "reason": "Asked about a refund"}),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let task_id = task["id"].as_str().expect("id").to_owned();
    let row = format!("#callbacks-table tr[data-task-id=\"{task_id}\"]");

    let (ada, grace) = tokio::join!(Browser::open("claims-ada"), Browser::open("claims-grace"));
    for (b, name) in [(&ada, "Ada"), (&grace, "Grace")] {
        b.sign_in(&console.base, &console.api_key, "", name).await;
        b.wait_page("live").await;
        b.click("nav#nav a[href=\"#/callbacks\"]").await;
        b.wait_page("callbacks").await;
        b.wait(&format!("{row} button[data-action=\"claim\"]"))
            .await;
    }
    // Both see it open; Ada claims first, Grace's page still offers the claim.
    ada.click(&format!("{row} button[data-action=\"claim\"]"))
        .await;
    ada.wait_text(&format!("{row} td[data-col=\"claimed-by\"]"), "Ada")
        .await;
    grace
        .click(&format!("{row} button[data-action=\"claim\"]"))
        .await;
    grace.wait_text("#callbacks-message", "Ada").await;
    grace
        .wait_text(&format!("{row} td[data-col=\"claimed-by\"]"), "Ada")
        .await;
    grace.screenshot("lost-claim").await;
    let (_, stored) = console
        .get(&format!("/api/v1/callback-tasks/{task_id}"))
        .await;
    assert_eq!(stored["assignee"], "Ada", "{stored}");

    // Ada cancels it with a reason.
    ada.click(&format!("{row} button[data-action=\"cancel\"]"))
        .await;
    ada.wait("dialog#cancel-dialog[open]").await;
    ada.fill("#cancel-reason", "Customer called back themselves")
        .await;
    ada.click("#cancel-submit").await;
    ada.wait_js("!document.querySelector('dialog#cancel-dialog[open]')")
        .await;
    let (_, stored) = console
        .get(&format!("/api/v1/callback-tasks/{task_id}"))
        .await;
    assert_eq!(stored["status"], "cancelled", "{stored}");
    ada.close().await;
    grace.close().await;
}
