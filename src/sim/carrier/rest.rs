//! The Twilio-compatible REST API (PROTOCOLS §3.4–§3.7): HTTP Basic authentication with an
//! account SID and auth token, form-encoded requests (repeated keys kept), JSON replies in
//! the legacy error shape, and the queued faults tests inject.
//!
//! Routes, under `/2010-04-01/Accounts/{AccountSid}/`:
//! `POST Calls.json` (create), `GET Calls.json` (list), `POST Calls/{Sid}.json` (update),
//! `GET Calls/{Sid}.json` (fetch), `POST Messages.json` (send an SMS), the recordings
//! (`POST Calls/{Sid}/Recordings.json`, `GET|DELETE Recordings/{Sid}.json`, `GET
//! Recordings/{Sid}.wav` with `Range`: see `recording.rs`); and `GET
//! /2010-04-01/Accounts/{AccountSid}.json` (the account: a credential check; a wrong token
//! gets Twilio's 401, code 20003).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use warp::Filter;
use warp::http::{Method, StatusCode};
use warp::reply::Reply;

use super::call::{
    AmdSpec, CallRunner, Control, OutboundSpec, StatusCallbackSpec, TwimlSource, new_call_sid,
};
use super::config::Fault;
use super::resource::{ApiError, call_json, message_json};
use super::shared::{Shared, lock};
use super::state::{
    CallDirection, CallEvent, CallSnapshot, CallStatus, MessageRecord, RequestRecord, param,
};
use super::webhook::{API_VERSION, CallIdentity, parse_twiml};

/// Longest inline `Twiml` accepted.
const MAX_TWIML_CHARS: usize = 4000;
/// Longest SMS body accepted.
const MAX_BODY_CHARS: usize = 1600;

type Params = Vec<(String, String)>;

/// Serves the API on `listener` until the task is aborted (which drops every connection).
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let service = warp::service(routes(shared));
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "carrier simulator: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = builder
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(service.clone()),
            )
            .into_owned();
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "carrier simulator: connection ended with an error");
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static
{
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::any()
        .and(warp::method())
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: warp::http::HeaderMap,
                  body: Bytes| {
                let shared = shared.clone();
                async move {
                    let auth = headers
                        .get(warp::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(basic_auth);
                    let path = path.as_str().to_owned();
                    if method == Method::GET && path.ends_with(".wav") {
                        let range = headers
                            .get(warp::http::header::RANGE)
                            .and_then(|v| v.to_str().ok());
                        return recording_media(&shared, &path, auth.as_ref(), range);
                    }
                    handle(shared, method, path, &query, auth, body).await
                }
            },
        )
        .recover(|_rejection: warp::Rejection| async {
            let error = ApiError::new(400, 20001, "Malformed request");
            Ok::<_, Infallible>(error_reply(&error))
        })
        .unify()
}

/// `(user, password)` of an `Authorization: Basic …` header.
fn basic_auth(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn json_reply(status: u16, body: &Value) -> warp::reply::Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code == StatusCode::NO_CONTENT {
        return warp::reply::with_status(warp::reply(), code).into_response();
    }
    warp::reply::with_status(warp::reply::json(body), code).into_response()
}

/// `GET …/Recordings/{Sid}.wav`: binary, with `Range`.
fn recording_media(
    shared: &Shared,
    path: &str,
    auth: Option<&(String, String)>,
    range: Option<&str>,
) -> warp::reply::Response {
    let answer = (|| {
        let rest = path
            .strip_prefix("/2010-04-01/Accounts/")
            .ok_or_else(|| not_found(path))?;
        let (account, rest) = rest.split_once('/').ok_or_else(|| not_found(path))?;
        authenticate(shared, account, auth)?;
        let sid = rest
            .strip_prefix("Recordings/")
            .and_then(|f| f.strip_suffix(".wav"))
            .filter(|s| !s.contains('/'))
            .ok_or_else(|| not_found(path))?;
        super::recording::media(shared, account, sid, path, range)
    })();
    let (status, reply) = match answer {
        Ok((status, headers, body)) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut reply = warp::reply::with_status(body, code).into_response();
            for (name, value) in headers {
                if let Ok(v) = warp::http::HeaderValue::from_str(&value) {
                    reply.headers_mut().insert(name, v);
                }
            }
            (status, reply)
        }
        Err(error) => (error.status, error_reply(&error)),
    };
    lock(&shared.requests).push(RequestRecord {
        method: String::from("GET"),
        path: path.to_owned(),
        params: range
            .map(|r| vec![(String::from("Range"), r.to_owned())])
            .unwrap_or_default(),
        auth_user: auth.map(|(user, _)| user.clone()),
        status,
    });
    reply
}

fn error_reply(error: &ApiError) -> warp::reply::Response {
    let mut reply = json_reply(error.status, &error.body());
    if error.status == 401 {
        reply.headers_mut().insert(
            warp::http::header::WWW_AUTHENTICATE,
            warp::http::HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
    }
    reply
}

async fn handle(
    shared: Arc<Shared>,
    method: Method,
    path: String,
    query: &str,
    auth: Option<(String, String)>,
    body: Bytes,
) -> warp::reply::Response {
    let raw: &[u8] = if method == Method::POST {
        &body
    } else {
        query.as_bytes()
    };
    let params: Params = url::form_urlencoded::parse(raw).into_owned().collect();
    let fault = lock(&shared.faults).pop_front();
    let result = match fault {
        Some(Fault::Fail(spec)) => Err(ApiError::new(spec.status, spec.code, spec.message)),
        Some(Fault::Delay(delay)) => {
            // The request has reached the carrier: it is carried out even if the client
            // goes away meanwhile (its process died), as a real carrier would.
            let work = {
                let (shared, method, path, params, auth) = (
                    shared.clone(),
                    method.clone(),
                    path.clone(),
                    params.clone(),
                    auth.clone(),
                );
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    route(&shared, &method, &path, &params, auth.as_ref())
                })
            };
            work.await.unwrap_or_else(|_| {
                Err(ApiError::new(
                    500,
                    20500,
                    "the simulator's request task failed",
                ))
            })
        }
        None => route(&shared, &method, &path, &params, auth.as_ref()),
    };
    let (status, reply) = match result {
        Ok((status, body)) => (status, json_reply(status, &body)),
        Err(error) => (error.status, error_reply(&error)),
    };
    tracing::debug!(method = %method, path, status, "carrier simulator: request");
    let slow = calls_resource(&method, &path);
    lock(&shared.requests).push(RequestRecord {
        method: method.to_string(),
        path,
        params,
        auth_user: auth.map(|(user, _)| user),
        status,
    });
    // The work is done (a call created) before a slow answer: a client that gives up
    // waiting has still caused it, as with the real carrier.
    let delay = {
        let settings = lock(&shared.settings);
        match slow {
            Some(CallsRequest::Create) => settings.create_response_delay,
            Some(CallsRequest::Lookup) => settings.lookup_response_delay,
            None => Duration::ZERO,
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    reply
}

/// The requests the configurable response delays apply to.
enum CallsRequest {
    /// `POST Calls.json`.
    Create,
    /// `GET Calls.json`, `GET Calls/{Sid}.json`.
    Lookup,
}

fn calls_resource(method: &Method, path: &str) -> Option<CallsRequest> {
    let rest = path
        .strip_prefix("/2010-04-01/Accounts/")
        .and_then(|r| r.split_once('/').map(|(_, rest)| rest))?;
    match *method {
        Method::POST if rest == "Calls.json" => Some(CallsRequest::Create),
        Method::GET if rest == "Calls.json" || rest.starts_with("Calls/") => {
            Some(CallsRequest::Lookup)
        }
        _ => None,
    }
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        404,
        20404,
        format!("The requested resource {path} was not found"),
    )
}

fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    params: &Params,
    auth: Option<&(String, String)>,
) -> Result<(u16, Value), ApiError> {
    let rest = path
        .strip_prefix("/2010-04-01/Accounts/")
        .ok_or_else(|| not_found(path))?;
    if let Some(account) = rest.strip_suffix(".json").filter(|a| !a.contains('/')) {
        // The Account resource: what a credential check reads.
        authenticate(shared, account, auth)?;
        return match *method {
            Method::GET => Ok((200, account_json(account))),
            _ => Err(method_not_allowed()),
        };
    }
    let (account, rest) = rest.split_once('/').ok_or_else(|| not_found(path))?;
    authenticate(shared, account, auth)?;
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        ["Calls.json"] => match *method {
            Method::POST => create_call(shared, account, params),
            Method::GET => Ok((200, list_calls(shared, account, params))),
            _ => Err(method_not_allowed()),
        },
        ["Calls", file] => {
            let sid = file.strip_suffix(".json").ok_or_else(|| not_found(path))?;
            match *method {
                Method::POST => update_call(shared, account, sid, path, params),
                Method::GET => {
                    let entry = shared
                        .call(sid)
                        .filter(|e| e.state.borrow().account_sid == account)
                        .ok_or_else(|| not_found(path))?;
                    let body = call_json(&entry.state.borrow());
                    Ok((200, body))
                }
                _ => Err(method_not_allowed()),
            }
        }
        ["Calls", sid, "Recordings.json"] => match *method {
            Method::POST => super::recording::create(shared, account, sid, path, params),
            _ => Err(method_not_allowed()),
        },
        ["Recordings", file] => {
            let sid = file.strip_suffix(".json").ok_or_else(|| not_found(path))?;
            match *method {
                Method::GET => super::recording::resource(shared, account, sid, path, false),
                Method::DELETE => super::recording::resource(shared, account, sid, path, true),
                _ => Err(method_not_allowed()),
            }
        }
        ["Messages.json"] => match *method {
            Method::POST => create_message(shared, account, params),
            _ => Err(method_not_allowed()),
        },
        _ => Err(not_found(path)),
    }
}

/// The Account resource of `account` (the fields Twilio sends that matter here).
fn account_json(account: &str) -> Value {
    json!({
        "sid": account,
        "friendly_name": format!("Simulated account {account}"),
        "status": "active",
        "type": "Full",
        "owner_account_sid": account,
        "uri": format!("/{API_VERSION}/Accounts/{account}.json"),
    })
}

fn method_not_allowed() -> ApiError {
    ApiError::new(405, 20004, "Method not allowed")
}

/// Basic auth must name a configured account with its token, and the path's account.
fn authenticate(
    shared: &Shared,
    path_account: &str,
    auth: Option<&(String, String)>,
) -> Result<(), ApiError> {
    let Some((user, password)) = auth else {
        return Err(ApiError::new(
            401,
            20003,
            "Authentication Error - No credentials provided",
        ));
    };
    let valid = shared.token(user).is_some_and(|token| token == *password);
    if !valid {
        return Err(ApiError::new(
            401,
            20003,
            "Authentication Error - invalid username or password",
        ));
    }
    if user != path_account {
        return Err(ApiError::new(
            401,
            20003,
            "Authentication Error - the credentials do not belong to this account",
        ));
    }
    Ok(())
}

/// `^\+[1-9]\d{1,14}$` (the same rule as the service's [`actors::domain::E164`]).
pub(crate) fn is_e164(number: &str) -> bool {
    actors::domain::E164::is_valid(number)
}

fn is_http_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

fn all(params: &Params, name: &str) -> Vec<String> {
    params
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

fn non_empty<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    param(params, name).map(str::trim).filter(|v| !v.is_empty())
}

fn http_method(params: &Params, name: &str) -> String {
    match param(params, name) {
        Some(m) if m.eq_ignore_ascii_case("GET") => "GET".into(),
        _ => "POST".into(),
    }
}

fn twiml_invalid(detail: &str) -> ApiError {
    ApiError::new(400, 21205, format!("Url/Twiml invalid: {detail}"))
}

/// The TwiML source of a create or update: exactly one of `Twiml` and `Url`.
fn twiml_source(params: &Params) -> Result<Option<TwimlSource>, ApiError> {
    match (non_empty(params, "Twiml"), non_empty(params, "Url")) {
        (Some(_), Some(_)) => Err(twiml_invalid("give exactly one of Url and Twiml")),
        (Some(twiml), None) => {
            if twiml.chars().count() > MAX_TWIML_CHARS {
                return Err(twiml_invalid("Twiml exceeds 4000 characters"));
            }
            parse_twiml(twiml).map_err(|e| twiml_invalid(&e))?;
            Ok(Some(TwimlSource::Inline(twiml.to_owned())))
        }
        (None, Some(url)) => {
            if !is_http_url(url) {
                return Err(twiml_invalid("Url must be an absolute http(s) URL"));
            }
            Ok(Some(TwimlSource::Url {
                url: url.to_owned(),
                method: http_method(params, "Method"),
            }))
        }
        (None, None) => Ok(None),
    }
}

fn create_call(
    shared: &Arc<Shared>,
    account: &str,
    params: &Params,
) -> Result<(u16, Value), ApiError> {
    let to = non_empty(params, "To")
        .ok_or_else(|| ApiError::new(400, 21201, "No 'To' number is specified"))?;
    if !is_e164(to) {
        return Err(ApiError::new(
            400,
            21211,
            format!("Invalid 'To' Phone Number: {to}"),
        ));
    }
    let from = non_empty(params, "From")
        .ok_or_else(|| ApiError::new(400, 21213, "No 'From' number is specified"))?;
    if !is_e164(from) {
        return Err(ApiError::new(
            400,
            21212,
            format!("Invalid 'From' Phone Number: {from}"),
        ));
    }
    let source =
        twiml_source(params)?.ok_or_else(|| twiml_invalid("give exactly one of Url and Twiml"))?;
    let status_callback = match non_empty(params, "StatusCallback") {
        Some(url) if is_http_url(url) => Some(StatusCallbackSpec::new(
            url.to_owned(),
            Some(http_method(params, "StatusCallbackMethod")),
            &all(params, "StatusCallbackEvent"),
        )),
        Some(_) => {
            return Err(ApiError::new(
                400,
                21609,
                "StatusCallback must be an absolute http(s) URL",
            ));
        }
        None => None,
    };
    let timeout = param(params, "Timeout")
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(60)
        .clamp(1, 600);
    let amd_requested = param(params, "MachineDetection").is_some_and(|m| {
        m.eq_ignore_ascii_case("Enable") || m.eq_ignore_ascii_case("DetectMessageEnd")
    });
    // `SendDigits` disables AMD (§6).
    let amd = (amd_requested && non_empty(params, "SendDigits").is_none()).then(|| AmdSpec {
        detect_message_end: param(params, "MachineDetection")
            .is_some_and(|m| m.eq_ignore_ascii_case("DetectMessageEnd")),
        timeout: param(params, "MachineDetectionTimeout")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map(|t| Duration::from_secs(t.clamp(3, 60))),
        is_async: param(params, "AsyncAmd").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        callback: non_empty(params, "AsyncAmdStatusCallback")
            .filter(|u| is_http_url(u))
            .map(|u| {
                (
                    u.to_owned(),
                    http_method(params, "AsyncAmdStatusCallbackMethod"),
                )
            }),
    });
    let token = shared
        .token(account)
        .ok_or_else(|| ApiError::new(401, 20003, "Authenticate"))?;
    let sid = new_call_sid();
    let id = CallIdentity {
        sid: sid.clone(),
        account_sid: account.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        direction: CallDirection::OutboundApi,
    };
    let snapshot = CallSnapshot::new(
        sid,
        id.account_sid.clone(),
        id.from.clone(),
        id.to.clone(),
        CallDirection::OutboundApi,
        CallStatus::Queued,
    );
    let body = call_json(&snapshot);
    let script = lock(&shared.settings)
        .callee_scripts
        .get(to)
        .cloned()
        .unwrap_or_default();
    let (entry, control) = shared.register_call(snapshot);
    tracing::info!(call = %id.sid, to = %id.to, from = %id.from, "carrier simulator: outbound call created");
    let runner = CallRunner::new(
        shared.clone(),
        id,
        token,
        entry.state.clone(),
        control,
        status_callback,
        script,
    );
    let spec = OutboundSpec {
        source,
        timeout: Duration::from_secs(timeout),
        amd,
    };
    let _ = shared.spawn(runner.run_outbound(spec));
    Ok((201, body))
}

/// `GET Calls.json`: the account's calls, newest first, filtered by `To`, `From`, `Status`
/// and `StartTime>=` (a UTC day compared with the day the call was created, as §3.6b
/// advises clients to filter by `date_created`), at most `PageSize` (default 50).
fn list_calls(shared: &Shared, account: &str, params: &Params) -> Value {
    let to = non_empty(params, "To");
    let from = non_empty(params, "From");
    let status = non_empty(params, "Status");
    let since = non_empty(params, "StartTime>=")
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let page_size = param(params, "PageSize")
        .and_then(|p| p.trim().parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let mut calls: Vec<CallSnapshot> = shared
        .all_calls()
        .iter()
        .map(|e| e.state.borrow().clone())
        .filter(|s| s.account_sid == account)
        .filter(|s| to.is_none_or(|to| s.to == to))
        .filter(|s| from.is_none_or(|from| s.from == from))
        .filter(|s| status.is_none_or(|st| s.status.as_str() == st))
        .filter(|s| since.is_none_or(|day| s.created_at.date_naive() >= day))
        .collect();
    calls.reverse();
    calls.truncate(page_size);
    let calls: Vec<Value> = calls.iter().map(call_json).collect();
    json!({
        "calls": calls,
        "page": 0,
        "page_size": page_size,
        "next_page_uri": null,
        "uri": format!("/{API_VERSION}/Accounts/{account}/Calls.json"),
    })
}

fn update_call(
    shared: &Shared,
    account: &str,
    sid: &str,
    path: &str,
    params: &Params,
) -> Result<(u16, Value), ApiError> {
    let entry = shared
        .call(sid)
        .filter(|e| e.state.borrow().account_sid == account)
        .ok_or_else(|| not_found(path))?;
    let not_in_progress = || ApiError::new(400, 21220, "Call is not in-progress. Cannot redirect.");
    let current = entry.state.borrow().status;
    if current.is_final() {
        return Err(not_in_progress());
    }
    let status = non_empty(params, "Status").map(str::to_ascii_lowercase);
    let control = match status.as_deref() {
        Some("completed") => Some(Control::Hangup),
        Some("canceled") => {
            matches!(current, CallStatus::Queued | CallStatus::Ringing).then_some(Control::Cancel)
        }
        Some(other) => {
            return Err(ApiError::new(
                400,
                20001,
                format!("Invalid Status {other:?}: use completed or canceled"),
            ));
        }
        None => twiml_source(params)?.map(Control::Redirect),
    };
    entry.state.send_modify(|s| {
        s.events.push(CallEvent::Updated {
            twiml: non_empty(params, "Twiml").map(str::to_owned),
            url: non_empty(params, "Url").map(str::to_owned),
            status: status.clone(),
        });
    });
    if let Some(control) = control {
        entry.control.send(control).map_err(|_| not_in_progress())?;
    }
    let body = call_json(&entry.state.borrow());
    Ok((200, body))
}

fn create_message(
    shared: &Shared,
    account: &str,
    params: &Params,
) -> Result<(u16, Value), ApiError> {
    let to = non_empty(params, "To")
        .ok_or_else(|| ApiError::new(400, 21604, "A 'To' phone number is required."))?;
    if !is_e164(to) {
        return Err(ApiError::new(
            400,
            21211,
            format!("Invalid 'To' Phone Number: {to}"),
        ));
    }
    let from = match (
        non_empty(params, "From"),
        non_empty(params, "MessagingServiceSid"),
    ) {
        (Some(from), _) if is_e164(from) => from.to_owned(),
        (Some(from), _) => {
            return Err(ApiError::new(
                400,
                21212,
                format!("Invalid 'From' Phone Number: {from}"),
            ));
        }
        (None, Some(service)) => service.to_owned(),
        (None, None) => {
            return Err(ApiError::new(
                400,
                21603,
                "A 'From' phone number is required.",
            ));
        }
    };
    let body = non_empty(params, "Body")
        .ok_or_else(|| ApiError::new(400, 21602, "Message body is required."))?;
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(ApiError::new(
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        ));
    }
    let record = MessageRecord {
        sid: format!("SM{}", uuid::Uuid::new_v4().simple()),
        account_sid: account.to_owned(),
        to: to.to_owned(),
        from,
        body: body.to_owned(),
        date_created: chrono::Utc::now(),
    };
    tracing::info!(message = %record.sid, to = %record.to, "carrier simulator: SMS sent");
    let json = message_json(&record);
    lock(&shared.messages).push(record);
    Ok((201, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_validation() {
        for ok in ["+14155551212", "+12", "+123456789012345"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "14155551212",
            "+0123",
            "+1",
            "+1234567890123456",
            "+1415-555",
            "",
            "+",
            "client:bob",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn basic_auth_parses() {
        let header = format!("Basic {}", STANDARD.encode("AC1:tok:en"));
        assert_eq!(
            basic_auth(&header),
            Some(("AC1".to_owned(), "tok:en".to_owned()))
        );
        assert_eq!(basic_auth("Bearer x"), None);
        assert_eq!(basic_auth("Basic !!!"), None);
    }
}
