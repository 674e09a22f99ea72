//! [`actors::carrier::Carrier`] over the Twilio REST API: renders the TwiML of each request
//! and maps Twilio's errors onto [`CarrierError`].

use actors::carrier::{
    CallChange, CallQuery, Carrier, CarrierAccount, CarrierAuth, CarrierCall, CarrierError,
    CarrierRecording, PlaceCall, PlaceLeg, PlacedCall, RecordingMedia, StartRecording,
};
use futures::future::BoxFuture;

use super::rest::{
    self, AmdMode, CallEvent, CallResource, CallUpdate, CreateCall, ListCalls, TwilioAuth,
    TwilioClient, TwilioError,
};
use super::twiml;

/// The production carrier (and, pointed at the simulator, the test one).
#[derive(Debug, Clone)]
pub struct TwilioCarrier {
    client: TwilioClient,
}

impl TwilioCarrier {
    /// Wraps a REST client.
    pub fn new(client: TwilioClient) -> Self {
        Self { client }
    }
}

fn auth(a: &CarrierAuth) -> TwilioAuth {
    TwilioAuth {
        account_sid: a.account_sid.clone(),
        auth_token: a.auth_token.clone(),
    }
}

/// Maps a Twilio error onto the carrier boundary's error.
pub fn carrier_error(e: TwilioError) -> CarrierError {
    CarrierError {
        suggested_status: rest::suggested_status(&e),
        code: e.code(),
        already_ended: e.is_call_already_ended(),
        timeout: matches!(e, TwilioError::Timeout),
        message: e.to_string(),
    }
}

fn carrier_call(c: CallResource) -> CarrierCall {
    CarrierCall {
        created_at: c.created_at_ms(),
        duration_secs: c.duration.as_deref().and_then(|d| d.parse().ok()),
        call_sid: c.sid,
        status: c.status,
        to: c.to,
        from: c.from,
    }
}

/// Calls asked for per lookup page.
const LOOKUP_PAGE_SIZE: u32 = 50;

impl Carrier for TwilioCarrier {
    fn place_call<'a>(
        &'a self,
        a: &'a CarrierAuth,
        call: &'a PlaceCall,
    ) -> BoxFuture<'a, Result<PlacedCall, CarrierError>> {
        Box::pin(async move {
            let mut req = CreateCall::new(
                call.to.clone(),
                call.from.clone(),
                twiml::Response::new(vec![twiml::connect(&call.stream)]).render(),
            );
            req.status_callback = Some(call.status_callback_url.clone());
            req.status_callback_events = vec![
                CallEvent::Initiated,
                CallEvent::Ringing,
                CallEvent::Answered,
                CallEvent::Completed,
            ];
            req.machine_detection =
                call.machine_detection
                    .as_ref()
                    .map(|m| rest::MachineDetection {
                        mode: if m.mode == "DetectMessageEnd" {
                            AmdMode::DetectMessageEnd
                        } else {
                            AmdMode::Enable
                        },
                        async_callback: Some(m.callback_url.clone()),
                        timeout_secs: m.timeout_secs,
                    });
            let created = self
                .client
                .create_call(&auth(a), &req)
                .await
                .map_err(carrier_error)?;
            Ok(PlacedCall {
                call_sid: created.sid,
                status: created.status,
            })
        })
    }

    fn place_leg<'a>(
        &'a self,
        a: &'a CarrierAuth,
        leg: &'a PlaceLeg,
    ) -> BoxFuture<'a, Result<PlacedCall, CarrierError>> {
        Box::pin(async move {
            let mut req = CreateCall::new(leg.to.clone(), leg.from.clone(), String::new());
            req.url = Some(leg.twiml_url.clone());
            req.status_callback = Some(leg.status_callback_url.clone());
            req.status_callback_events = vec![
                CallEvent::Initiated,
                CallEvent::Ringing,
                CallEvent::Answered,
                CallEvent::Completed,
            ];
            req.timeout_secs = Some(leg.timeout_secs);
            let created = self
                .client
                .create_call(&auth(a), &req)
                .await
                .map_err(carrier_error)?;
            Ok(PlacedCall {
                call_sid: created.sid,
                status: created.status,
            })
        })
    }

    fn update_call<'a>(
        &'a self,
        a: &'a CarrierAuth,
        call_sid: &'a str,
        change: &'a CallChange,
    ) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async move {
            let update = match change {
                CallChange::Hangup => CallUpdate::Complete,
                other => CallUpdate::Twiml(twiml::for_change(other).render()),
            };
            self.client
                .update_call(&auth(a), call_sid, &update)
                .await
                .map(|_| ())
                .map_err(carrier_error)
        })
    }

    fn fetch_call<'a>(
        &'a self,
        a: &'a CarrierAuth,
        call_sid: &'a str,
    ) -> BoxFuture<'a, Result<Option<CarrierCall>, CarrierError>> {
        Box::pin(async move {
            match self.client.fetch_call(&auth(a), call_sid).await {
                Ok(c) => Ok(Some(carrier_call(c))),
                Err(e) if e.code() == Some(rest::CODE_NOT_FOUND) => Ok(None),
                Err(e) => Err(carrier_error(e)),
            }
        })
    }

    fn find_calls<'a>(
        &'a self,
        a: &'a CarrierAuth,
        query: &'a CallQuery,
    ) -> BoxFuture<'a, Result<Vec<CarrierCall>, CarrierError>> {
        Box::pin(async move {
            let day = chrono::DateTime::from_timestamp_millis(query.since).map(|t| t.date_naive());
            let list = ListCalls {
                to: Some(query.to.clone()),
                from: Some(query.from.clone()),
                start_time_from: day,
                page_size: LOOKUP_PAGE_SIZE,
            };
            let page = self
                .client
                .list_calls(&auth(a), &list)
                .await
                .map_err(carrier_error)?;
            Ok(page.calls.into_iter().map(carrier_call).collect())
        })
    }

    fn send_sms<'a>(
        &'a self,
        a: &'a CarrierAuth,
        to: &'a str,
        from: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<String, CarrierError>> {
        Box::pin(async move {
            self.client
                .send_message(&auth(a), to, from, body)
                .await
                .map(|m| m.sid)
                .map_err(carrier_error)
        })
    }

    fn fetch_account<'a>(
        &'a self,
        a: &'a CarrierAuth,
    ) -> BoxFuture<'a, Result<CarrierAccount, CarrierError>> {
        Box::pin(async move {
            let account = self
                .client
                .fetch_account(&auth(a))
                .await
                .map_err(carrier_error)?;
            Ok(CarrierAccount {
                sid: account.sid,
                friendly_name: account.friendly_name,
                status: account.status,
            })
        })
    }

    // --- recording (issue 16, part 1) ---

    fn start_recording<'a>(
        &'a self,
        a: &'a CarrierAuth,
        call_sid: &'a str,
        request: &'a StartRecording,
    ) -> BoxFuture<'a, Result<CarrierRecording, CarrierError>> {
        Box::pin(async move {
            let req = rest::CreateRecording {
                channels: request.channels.clone(),
                status_callback: request.status_callback_url.clone(),
                status_callback_events: request.status_callback_events.clone(),
            };
            let r = self
                .client
                .create_recording(&auth(a), call_sid, &req)
                .await
                .map_err(carrier_error)?;
            Ok(CarrierRecording {
                started_at: r
                    .start_time
                    .as_deref()
                    .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
                    .map(|d| d.timestamp_millis()),
                channels: r.channels.unwrap_or(2),
                sid: r.sid,
                call_sid: r.call_sid,
                status: r.status,
            })
        })
    }

    fn delete_recording<'a>(
        &'a self,
        a: &'a CarrierAuth,
        recording_sid: &'a str,
    ) -> BoxFuture<'a, Result<bool, CarrierError>> {
        Box::pin(async move {
            match self.client.delete_recording(&auth(a), recording_sid).await {
                Ok(()) => Ok(true),
                Err(e) if e.code() == Some(rest::CODE_NOT_FOUND) => Ok(false),
                Err(e) => Err(carrier_error(e)),
            }
        })
    }

    fn fetch_recording_media<'a>(
        &'a self,
        a: &'a CarrierAuth,
        recording_sid: &'a str,
        range: Option<String>,
    ) -> BoxFuture<'a, Result<Option<RecordingMedia>, CarrierError>> {
        Box::pin(async move {
            let answer = match self
                .client
                .fetch_recording_media(&auth(a), recording_sid, range.as_deref())
                .await
            {
                Ok(answer) => answer,
                Err(e) if e.code() == Some(rest::CODE_NOT_FOUND) => return Ok(None),
                Err(e) => return Err(carrier_error(e)),
            };
            let header = |name: reqwest::header::HeaderName| {
                answer
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let content_type = header(reqwest::header::CONTENT_TYPE);
            let content_length =
                header(reqwest::header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
            let content_range = header(reqwest::header::CONTENT_RANGE);
            let accept_ranges = header(reqwest::header::ACCEPT_RANGES);
            let body = futures::stream::unfold(Some(answer.response), |response| async move {
                let mut response = response?;
                match response.chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
                    Ok(None) => None,
                    Err(e) => Some((
                        Err(carrier_error(TwilioError::Network(
                            e.without_url().to_string(),
                        ))),
                        None,
                    )),
                }
            });
            Ok(Some(RecordingMedia {
                status: answer.status,
                content_type,
                content_length,
                content_range,
                accept_ranges,
                body: Box::pin(body),
            }))
        })
    }
}
