//! The edge (issue 12, item 5): a websocket route asked without a (complete) upgrade answers
//! a JSON 400 naming the problem, never a 500 and never an ERROR log line; media upgrades
//! waiting for their `start` are bounded per address (and in total) and closed at a short
//! deadline, which frees their places.

use serde_json::Value;
use tokio_tungstenite::tungstenite;

use crate::helpers::{
    Backend, Ws, backend_tests, close_frame, logs, open_media, spawn_app, spawn_app_with,
};

backend_tests!(
    a_websocket_route_without_an_upgrade_answers_400,
    pending_media_upgrades_are_bounded_and_time_out,
);

async fn pending_media_upgrades_are_bounded_and_time_out(backend: Backend) {
    let app = spawn_app_with(backend, |raw| {
        raw.set("MEDIA_PENDING_PER_IP", "2");
        raw.set("MEDIA_PENDING_MAX", "8");
        raw.set("MEDIA_START_TIMEOUT_MS", "2000");
    })
    .await;
    let mut first: Ws = open_media(&app, None).await;
    let mut second: Ws = open_media(&app, None).await;
    // A third idle upgrade from the same address is refused before it is upgraded.
    let url = app.url("/media-stream").replacen("http://", "ws://", 1);
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            let body: Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).expect("JSON");
            assert_eq!(body["error"]["code"], "concurrency_limit", "{body}");
        }
        Err(other) => panic!("unexpected failure: {other}"),
        Ok(_) => panic!("a third pending upgrade was accepted"),
    }
    // Sockets that never send `start` are closed at the deadline, and their places freed.
    assert_eq!(
        close_frame(&mut first).await,
        (1008, "start_timeout".into())
    );
    assert_eq!(
        close_frame(&mut second).await,
        (1008, "start_timeout".into())
    );
    let mut again: Ws = open_media(&app, None).await;
    assert_eq!(
        close_frame(&mut again).await,
        (1008, "start_timeout".into())
    );
    app.stop().await;
}

async fn a_websocket_route_without_an_upgrade_answers_400(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.url("/media-stream");
    let cases: [(&str, &[(&str, &str)]); 5] = [
        ("plain GET", &[]),
        ("keep-alive", &[("connection", "keep-alive")]),
        (
            "upgrade header without connection upgrade",
            &[("connection", "keep-alive"), ("upgrade", "websocket")],
        ),
        (
            "no key",
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
            ],
        ),
        (
            "wrong version",
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "8"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        ),
    ];
    for (name, headers) in cases {
        let mut req = app.client.get(&url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("JSON body");
        assert!(
            status == 400 || status == 426,
            "{name}: status {status}: {body}"
        );
        assert!(body["error"]["code"].is_string(), "{name}: {body}");
    }
    let logged = logs().contents();
    assert!(
        !logged
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("/media-stream")),
        "an ERROR was logged"
    );
    app.stop().await;
}
