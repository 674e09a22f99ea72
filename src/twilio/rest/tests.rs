//! The REST client against a recording warp server on 127.0.0.1, plus the pure helpers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use warp::Filter;
use warp::http::StatusCode;

use super::*;

const SID: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "secret-token-123";
const CALL_SID: &str = "CA00000000000000000000000000000002";

const CALL_201: &str = r#"{
  "sid": "CA00000000000000000000000000000002",
  "account_sid": "AC00000000000000000000000000000001",
  "to": "+15005550006", "to_formatted": "(500) 555-0006",
  "from": "+15005550001", "status": "queued", "direction": "outbound-api",
  "duration": null, "answered_by": null, "price": null, "api_version": "2010-04-01",
  "queue_time": "0", "subresource_uris": {"events": "/x"}
}"#;

/// One request as the test server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    content_type: Option<String>,
    user_agent: Option<String>,
    body: String,
}

impl Recorded {
    fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_str(&self.body).expect("form body")
    }

    fn values(&self, key: &str) -> Vec<String> {
        self.form()
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect()
    }
}

/// What the test server answers.
#[derive(Clone)]
enum Answer {
    Reply {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Never answers.
    Hang,
}

struct TestServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl TestServer {
    async fn start(answer: Answer) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        let routes = warp::any()
            .and(warp::method())
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::header::optional::<String>("content-type"))
            .and(warp::header::optional::<String>("user-agent"))
            .and(warp::body::bytes())
            .then(
                move |method: warp::http::Method,
                      path: warp::path::FullPath,
                      query: String,
                      authorization,
                      content_type,
                      user_agent,
                      body: bytes::Bytes| {
                    let log = Arc::clone(&log);
                    let answer = answer.clone();
                    async move {
                        log.lock().expect("log lock").push(Recorded {
                            method: method.to_string(),
                            path: path.as_str().to_owned(),
                            query,
                            authorization,
                            content_type,
                            user_agent,
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                        match answer {
                            Answer::Reply {
                                status,
                                content_type,
                                body,
                            } => warp::reply::with_status(
                                warp::reply::with_header(body, "content-type", content_type),
                                StatusCode::from_u16(status).expect("status"),
                            ),
                            Answer::Hang => {
                                std::future::pending::<()>().await;
                                unreachable!("pending never completes")
                            }
                        }
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        Self { addr, requests }
    }

    async fn json(status: u16, body: &str) -> Self {
        Self::start(Answer::Reply {
            status,
            content_type: "application/json",
            body: body.to_owned(),
        })
        .await
    }

    fn client(&self) -> TwilioClient {
        client_for(&format!("http://{}", self.addr), Duration::from_secs(5))
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("log lock").clone()
    }

    fn only_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "{requests:?}");
        requests.into_iter().next().expect("one request")
    }
}

fn client_for(base: &str, timeout: Duration) -> TwilioClient {
    crate::startup::install_crypto_provider();
    TwilioClient::new(Url::parse(base).expect("url"), timeout).expect("client")
}

fn auth() -> TwilioAuth {
    TwilioAuth {
        account_sid: SID.to_owned(),
        auth_token: TOKEN.to_owned(),
    }
}

fn api(status: u16, code: Option<i64>) -> TwilioError {
    TwilioError::Api {
        status,
        code,
        message: "m".to_owned(),
        more_info: None,
    }
}

#[tokio::test]
async fn create_call_sends_form_and_basic_auth_and_parses_201() {
    let server = TestServer::json(201, CALL_201).await;
    let mut req = CreateCall::new(
        "+15005550006",
        "+15005550001",
        r#"<Response><Connect><Stream url="wss://x/media?a=1&b=2"/></Connect></Response>"#,
    );
    req.status_callback = Some("https://hooks.example.com/status".to_owned());
    req.status_callback_events = vec![
        CallEvent::Initiated,
        CallEvent::Ringing,
        CallEvent::Answered,
        CallEvent::Completed,
    ];
    req.machine_detection = Some(MachineDetection {
        mode: AmdMode::DetectMessageEnd,
        async_callback: Some("https://hooks.example.com/amd".to_owned()),
        timeout_secs: Some(20),
    });
    req.timeout_secs = Some(30);
    req.time_limit_secs = Some(600);

    let call = server
        .client()
        .create_call(&auth(), &req)
        .await
        .expect("created");
    assert_eq!(
        call,
        CallResource {
            sid: CALL_SID.to_owned(),
            status: "queued".to_owned(),
            to: "+15005550006".to_owned(),
            from: "+15005550001".to_owned(),
            direction: Some("outbound-api".to_owned()),
            account_sid: SID.to_owned(),
            duration: None,
            answered_by: None,
            date_created: None,
        }
    );

    let sent = server.only_request();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, format!("/2010-04-01/Accounts/{SID}/Calls.json"));
    let expected_auth = format!("Basic {}", STANDARD.encode(format!("{SID}:{TOKEN}")));
    assert_eq!(sent.authorization.as_deref(), Some(expected_auth.as_str()));
    assert_eq!(
        sent.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        sent.user_agent,
        Some(format!("stateset-voice/{}", env!("CARGO_PKG_VERSION")))
    );
    assert!(
        sent.body.contains(
            "StatusCallbackEvent=initiated&StatusCallbackEvent=ringing\
             &StatusCallbackEvent=answered&StatusCallbackEvent=completed"
        ),
        "{}",
        sent.body
    );
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert_eq!(
        sent.form(),
        pairs(&[
            ("To", "+15005550006"),
            ("From", "+15005550001"),
            ("Twiml", &req.twiml),
            ("StatusCallback", "https://hooks.example.com/status"),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
            ("MachineDetection", "DetectMessageEnd"),
            ("AsyncAmd", "true"),
            ("AsyncAmdStatusCallback", "https://hooks.example.com/amd"),
            ("AsyncAmdStatusCallbackMethod", "POST"),
            ("MachineDetectionTimeout", "20"),
            ("Timeout", "30"),
            ("TimeLimit", "600"),
        ])
    );
}

#[tokio::test]
async fn minimal_create_call_and_sync_amd_send_only_what_is_set() {
    let server = TestServer::json(201, CALL_201).await;
    let mut req = CreateCall::new("+1", "+2", "<Response/>");
    // Events without a callback are not sent.
    req.status_callback_events = vec![CallEvent::Completed];
    req.machine_detection = Some(MachineDetection {
        mode: AmdMode::Enable,
        async_callback: None,
        timeout_secs: None,
    });
    server
        .client()
        .create_call(&auth(), &req)
        .await
        .expect("created");
    let sent = server.only_request();
    let keys: Vec<String> = sent.form().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["To", "From", "Twiml", "MachineDetection"]);
    assert_eq!(sent.values("MachineDetection"), ["Enable"]);
}

#[tokio::test]
async fn base_url_path_prefix_is_kept_and_sids_are_percent_encoded() {
    let server = TestServer::json(200, CALL_201).await;
    let client = client_for(
        &format!("http://{}/twilio/", server.addr),
        Duration::from_secs(5),
    );
    client
        .update_call(&auth(), "CA 1/../x", &CallUpdate::Complete)
        .await
        .expect("updated");
    assert_eq!(
        server.only_request().path,
        format!("/twilio/2010-04-01/Accounts/{SID}/Calls/CA%201%2F..%2Fx.json")
    );
}

#[tokio::test]
async fn update_call_encodes_twiml_complete_and_cancel() {
    let server = TestServer::json(200, CALL_201).await;
    let client = server.client();
    let twiml = "<Response><Hangup/></Response>";
    for update in [
        CallUpdate::Twiml(twiml.to_owned()),
        CallUpdate::Complete,
        CallUpdate::Cancel,
    ] {
        client
            .update_call(&auth(), CALL_SID, &update)
            .await
            .expect("updated");
    }
    let sent = server.requests();
    assert_eq!(sent.len(), 3);
    for request in &sent {
        assert_eq!(
            request.path,
            format!("/2010-04-01/Accounts/{SID}/Calls/{CALL_SID}.json")
        );
    }
    assert_eq!(sent[0].form(), [("Twiml".to_owned(), twiml.to_owned())]);
    assert_eq!(
        sent[0].body,
        "Twiml=%3CResponse%3E%3CHangup%2F%3E%3C%2FResponse%3E"
    );
    assert_eq!(sent[1].body, "Status=completed");
    assert_eq!(sent[2].body, "Status=canceled");
}

#[tokio::test]
async fn send_message_posts_to_messages() {
    let server = TestServer::json(
        201,
        r#"{"sid":"SM1","status":"queued","to":"+1","from":"+2","body":"hi","num_segments":"1"}"#,
    )
    .await;
    let message = server
        .client()
        .send_message(&auth(), "+1", "+2", "hi & bye")
        .await
        .expect("sent");
    assert_eq!(
        message,
        MessageResource {
            sid: "SM1".to_owned(),
            status: "queued".to_owned(),
            to: "+1".to_owned(),
            from: "+2".to_owned(),
        }
    );
    let sent = server.only_request();
    assert_eq!(
        sent.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(sent.body, "To=%2B1&From=%2B2&Body=hi+%26+bye");
}

#[tokio::test]
async fn legacy_error_shape_is_parsed() {
    let server = TestServer::json(
        400,
        r#"{"code": 21211, "message": "The 'To' number +1 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#,
    )
    .await;
    let err = server
        .client()
        .create_call(&auth(), &CreateCall::new("+1", "+2", "<Response/>"))
        .await
        .expect_err("rejected");
    assert_eq!(
        err,
        TwilioError::Api {
            status: 400,
            code: Some(21211),
            message: "The 'To' number +1 is not a valid phone number.".to_owned(),
            more_info: Some("https://www.twilio.com/docs/errors/21211".to_owned()),
        }
    );
    assert_eq!(err.code(), Some(21211));
    assert_eq!(suggested_status(&err), 400);
    assert_eq!(
        err.to_string(),
        "twilio api error 400 (code 21211): The 'To' number +1 is not a valid phone number."
    );
}

#[tokio::test]
async fn rfc9457_problem_document_is_parsed() {
    let server = TestServer::start(Answer::Reply {
        status: 401,
        content_type: "application/problem+json",
        body: r#"{"type": "https://www.twilio.com/docs/errors/20003", "title": "Unauthorized",
                  "status": 401, "code": 20003, "detail": "Authentication Error - invalid username",
                  "instance": "/2010-04-01/Accounts/AC1/Calls.json"}"#
            .to_owned(),
    })
    .await;
    let err = server
        .client()
        .create_call(&auth(), &CreateCall::new("+1", "+2", "<Response/>"))
        .await
        .expect_err("rejected");
    assert_eq!(
        err,
        TwilioError::Api {
            status: 401,
            code: Some(20003),
            message: "Authentication Error - invalid username".to_owned(),
            more_info: Some("https://www.twilio.com/docs/errors/20003".to_owned()),
        }
    );
    assert_eq!(suggested_status(&err), 502);
}

#[tokio::test]
async fn fetch_call_gets_the_call_resource() {
    let server = TestServer::json(
        200,
        r#"{"sid": "CA00000000000000000000000000000002", "account_sid": "AC00000000000000000000000000000001",
            "to": "+15005550006", "from": "+15005550001", "status": "in-progress",
            "date_created": "Tue, 01 Jul 2025 10:00:05 +0000", "duration": null}"#,
    )
    .await;
    let call = server
        .client()
        .fetch_call(&auth(), CALL_SID)
        .await
        .expect("fetched");
    assert_eq!(call.status, "in-progress");
    assert_eq!(call.created_at_ms(), Some(1_751_364_005_000));
    let sent = server.only_request();
    assert_eq!(sent.method, "GET");
    assert_eq!(
        sent.path,
        format!("/2010-04-01/Accounts/{SID}/Calls/{CALL_SID}.json")
    );
    assert!(sent.authorization.is_some_and(|a| a.starts_with("Basic ")));
}

#[tokio::test]
async fn fetch_account_gets_the_account_resource_and_a_wrong_token_is_20003() {
    let server = TestServer::json(
        200,
        r#"{"sid": "AC00000000000000000000000000000001", "friendly_name": "Acme", "status": "active",
            "type": "Full", "owner_account_sid": "AC00000000000000000000000000000001"}"#,
    )
    .await;
    let account = server
        .client()
        .fetch_account(&auth())
        .await
        .expect("fetched");
    assert_eq!(account.sid, SID);
    assert_eq!(account.status, "active");
    assert_eq!(account.friendly_name.as_deref(), Some("Acme"));
    let sent = server.only_request();
    assert_eq!(sent.method, "GET");
    assert_eq!(sent.path, format!("/2010-04-01/Accounts/{SID}.json"));
    assert!(sent.authorization.is_some_and(|a| a.starts_with("Basic ")));

    let refused = TestServer::json(
        401,
        r#"{"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}"#,
    )
    .await;
    let err = refused
        .client()
        .fetch_account(&auth())
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some(CODE_AUTH_FAILED));
}

#[tokio::test]
async fn list_calls_sends_the_filters_and_parses_the_page() {
    let server = TestServer::json(
        200,
        r#"{"calls": [{"sid": "CA1", "account_sid": "AC00000000000000000000000000000001",
            "to": "+15005550006", "from": "+15005550001", "status": "queued",
            "date_created": "Tue, 01 Jul 2025 10:00:05 +0000"}],
            "next_page_uri": null, "page": 0, "page_size": 50}"#,
    )
    .await;
    let list = ListCalls {
        to: Some("+15005550006".into()),
        from: Some("+15005550001".into()),
        start_time_from: chrono::NaiveDate::from_ymd_opt(2025, 7, 1),
        page_size: 50,
    };
    let page = server
        .client()
        .list_calls(&auth(), &list)
        .await
        .expect("listed");
    assert_eq!(page.calls.len(), 1);
    assert_eq!(page.calls[0].sid, "CA1");
    let sent = server.only_request();
    assert_eq!(sent.method, "GET");
    assert_eq!(sent.path, format!("/2010-04-01/Accounts/{SID}/Calls.json"));
    let query: Vec<(String, String)> = serde_urlencoded::from_str(&sent.query).expect("query");
    assert_eq!(
        query,
        [
            ("To".to_owned(), "+15005550006".to_owned()),
            ("From".to_owned(), "+15005550001".to_owned()),
            ("StartTime>=".to_owned(), "2025-07-01".to_owned()),
            ("PageSize".to_owned(), "50".to_owned()),
        ]
    );
}

#[tokio::test]
async fn update_of_ended_call_is_recognised() {
    let server = TestServer::json(
        400,
        r#"{"code": 21220, "message": "Call is not in-progress. Cannot redirect.",
            "more_info": "https://www.twilio.com/docs/errors/21220", "status": 400}"#,
    )
    .await;
    let err = server
        .client()
        .update_call(&auth(), CALL_SID, &CallUpdate::Complete)
        .await
        .expect_err("rejected");
    assert!(err.is_call_already_ended(), "{err:?}");
}

#[tokio::test]
async fn non_json_error_body_keeps_status_and_truncated_text() {
    let long = format!(
        "<html><body>Bad   Gateway\n{}</body></html>",
        "é".repeat(500)
    );
    let server = TestServer::start(Answer::Reply {
        status: 502,
        content_type: "text/html",
        body: long,
    })
    .await;
    let err = server
        .client()
        .create_call(&auth(), &CreateCall::new("+1", "+2", "<Response/>"))
        .await
        .expect_err("rejected");
    let TwilioError::Api {
        status,
        code,
        message,
        more_info,
    } = &err
    else {
        panic!("expected Api, got {err:?}");
    };
    assert_eq!((*status, *code, more_info), (502, None, &None));
    assert!(
        message.starts_with("<html><body>Bad Gateway é"),
        "{message}"
    );
    assert!(message.ends_with('…'), "{message}");
    assert_eq!(message.chars().count(), MAX_ERROR_TEXT_CHARS + 1);
    assert_eq!(suggested_status(&err), 502);
}

#[tokio::test]
async fn empty_error_body_uses_the_reason_phrase() {
    let server = TestServer::start(Answer::Reply {
        status: 429,
        content_type: "text/plain",
        body: String::new(),
    })
    .await;
    let err = server
        .client()
        .update_call(&auth(), CALL_SID, &CallUpdate::Cancel)
        .await
        .expect_err("rejected");
    assert_eq!(
        err,
        TwilioError::Api {
            status: 429,
            code: None,
            message: "too many requests".to_owned(),
            more_info: None,
        }
    );
    assert_eq!(suggested_status(&err), 503);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = TestServer::start(Answer::Reply {
        status: 302,
        content_type: "text/plain",
        body: String::new(),
    })
    .await;
    let err = server
        .client()
        .create_call(&auth(), &CreateCall::new("+1", "+2", "<Response/>"))
        .await
        .expect_err("rejected");
    assert!(
        matches!(err, TwilioError::Api { status: 302, .. }),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn undecodable_success_body_is_a_decode_error() {
    let server = TestServer::json(201, r#"{"sid": "CA1"}"#).await;
    let err = server
        .client()
        .create_call(&auth(), &CreateCall::new("+1", "+2", "<Response/>"))
        .await
        .expect_err("undecodable");
    assert!(matches!(err, TwilioError::Decode(_)), "{err:?}");
    assert_eq!(suggested_status(&err), 502);
}

#[tokio::test]
async fn slow_server_is_a_timeout() {
    let server = TestServer::start(Answer::Hang).await;
    let client = client_for(
        &format!("http://{}", server.addr),
        Duration::from_millis(200),
    );
    let err = client
        .create_call(&auth(), &CreateCall::new("+1", "+2", "<Response/>"))
        .await
        .expect_err("timed out");
    assert_eq!(err, TwilioError::Timeout);
    assert_eq!(suggested_status(&err), 504);
}

#[tokio::test]
async fn refused_connection_is_a_network_error_without_secrets() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    let client = client_for(&format!("http://{addr}"), Duration::from_secs(5));
    let err = client
        .create_call(&auth(), &CreateCall::new("+1", "+2", "<Response/>"))
        .await
        .expect_err("refused");
    let TwilioError::Network(message) = &err else {
        panic!("expected Network, got {err:?}");
    };
    assert!(!message.contains(TOKEN), "{message}");
    assert!(!message.contains(SID), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert_eq!(suggested_status(&err), 502);
}

#[tokio::test]
async fn too_long_twiml_is_rejected_before_sending() {
    let server = TestServer::json(201, CALL_201).await;
    let client = server.client();
    let at_limit = "é".repeat(MAX_TWIML_CHARS);
    let over = "x".repeat(MAX_TWIML_CHARS + 1);

    let err = client
        .create_call(&auth(), &CreateCall::new("+1", "+2", over.clone()))
        .await
        .expect_err("too long");
    assert_eq!(
        err,
        TwilioError::TwimlTooLong {
            len: MAX_TWIML_CHARS + 1
        }
    );
    assert_eq!(suggested_status(&err), 500);
    let err = client
        .update_call(&auth(), CALL_SID, &CallUpdate::Twiml(over))
        .await
        .expect_err("too long");
    assert!(matches!(err, TwilioError::TwimlTooLong { .. }), "{err:?}");
    assert!(server.requests().is_empty());

    // Exactly 4000 characters (8000 bytes) is allowed.
    client
        .create_call(&auth(), &CreateCall::new("+1", "+2", at_limit))
        .await
        .expect("at the limit");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn suggested_status_table() {
    let cases = [
        (api(400, Some(21211)), 400),
        (api(400, Some(21212)), 400),
        (api(400, Some(21214)), 400),
        (api(400, Some(13224)), 400),
        (api(400, Some(21217)), 400),
        (api(401, Some(20003)), 502),
        (api(429, Some(20429)), 503),
        (api(429, None), 503),
        (api(404, Some(20404)), 502),
        (api(400, None), 502),
        (api(500, None), 502),
        (api(503, Some(20500)), 502),
        (api(302, None), 502),
        (TwilioError::Timeout, 504),
        (TwilioError::Network("refused".to_owned()), 502),
        (TwilioError::Decode("eof".to_owned()), 502),
        (TwilioError::TwimlTooLong { len: 4001 }, 500),
        (TwilioError::InvalidBase("ftp".to_owned()), 500),
    ];
    for (err, expected) in cases {
        assert_eq!(suggested_status(&err), expected, "{err:?}");
    }
}

#[test]
fn call_already_ended_codes() {
    assert!(api(400, Some(21220)).is_call_already_ended());
    assert!(api(404, Some(20404)).is_call_already_ended());
    assert!(!api(404, None).is_call_already_ended());
    assert!(!api(400, Some(21211)).is_call_already_ended());
    assert!(!TwilioError::Timeout.is_call_already_ended());
    assert_eq!(TwilioError::Timeout.code(), None);
}

#[test]
fn error_parsing_edge_cases() {
    // Numeric-string code, message from `title` only, `about:blank` type dropped.
    let err = api_error(
        StatusCode::FORBIDDEN,
        br#"{"type":"about:blank","title":"Forbidden","status":403,"code":"20403"}"#,
    );
    assert_eq!(
        err,
        TwilioError::Api {
            status: 403,
            code: Some(20403),
            message: "Forbidden".to_owned(),
            more_info: None,
        }
    );
    // JSON without any error field: the text is kept.
    let err = api_error(StatusCode::BAD_GATEWAY, br#"{"hello":"world"}"#);
    assert_eq!(
        err,
        TwilioError::Api {
            status: 502,
            code: None,
            message: r#"{"hello":"world"}"#.to_owned(),
            more_info: None,
        }
    );
    // Code only: the reason phrase.
    let err = api_error(StatusCode::NOT_FOUND, br#"{"code":20404,"status":404}"#);
    assert_eq!(
        err,
        TwilioError::Api {
            status: 404,
            code: Some(20404),
            message: "not found".to_owned(),
            more_info: None,
        }
    );
}

#[test]
fn invalid_base_urls_are_rejected() {
    crate::startup::install_crypto_provider();
    for base in [
        "ftp://api.twilio.com",
        "mailto:someone@example.com",
        "https://user:pass@api.twilio.com",
        "https://api.twilio.com/?x=1",
        "https://api.twilio.com/#frag",
    ] {
        let err = TwilioClient::new(Url::parse(base).expect("url"), Duration::from_secs(1))
            .expect_err(base);
        assert!(
            matches!(err, TwilioError::InvalidBase(_)),
            "{base}: {err:?}"
        );
        assert_eq!(suggested_status(&err), 500);
    }
    let client = TwilioClient::new(
        Url::parse(TWILIO_API_BASE).expect("url"),
        Duration::from_secs(1),
    )
    .expect("production base");
    assert_eq!(client.base_url().as_str(), "https://api.twilio.com/");
}

#[test]
fn debug_output_hides_secrets() {
    let debug = format!("{:?}", auth());
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains(SID), "{debug}");

    let twiml = r#"<Response><Connect><Stream url="wss://x"><Parameter name="token" value="stream-secret"/></Stream></Connect></Response>"#;
    let debug = format!("{:?}", CreateCall::new("+1", "+2", twiml));
    assert!(!debug.contains("stream-secret"), "{debug}");
    assert!(
        debug.contains(&format!("<{} chars>", twiml.len())),
        "{debug}"
    );
    let debug = format!("{:?}", CallUpdate::Twiml(twiml.to_owned()));
    assert!(!debug.contains("stream-secret"), "{debug}");
    assert_eq!(format!("{:?}", CallUpdate::Complete), "Complete");
}

#[test]
fn error_messages_are_short_and_lowercase() {
    assert_eq!(TwilioError::Timeout.to_string(), "twilio request timed out");
    assert_eq!(
        TwilioError::TwimlTooLong { len: 4001 }.to_string(),
        "inline twiml is 4001 characters, over the 4000 limit"
    );
    assert_eq!(api(500, None).to_string(), "twilio api error 500: m");
}

// --- recording (issue 16, part 1) ---

#[test]
fn a_recording_asks_for_dual_channels_a_post_callback_and_three_events() {
    let req = CreateRecording {
        channels: "dual".into(),
        status_callback: "https://voice.example.com/api/v1/recording-status?call_id=call_1".into(),
        status_callback_events: vec!["in-progress".into(), "completed".into(), "absent".into()],
    };
    assert_eq!(
        req.form(),
        vec![
            ("RecordingChannels", "dual".to_owned()),
            (
                "RecordingStatusCallback",
                "https://voice.example.com/api/v1/recording-status?call_id=call_1".to_owned()
            ),
            ("RecordingStatusCallbackMethod", "POST".to_owned()),
            (
                "RecordingStatusCallbackEvent",
                "in-progress completed absent".to_owned()
            ),
        ]
    );
}
