//! [`actors::carrier::Carrier`] over the Twilio REST API: renders the TwiML of each request
//! and maps Twilio's errors onto [`CarrierError`].

use actors::carrier::{CallChange, Carrier, CarrierAuth, CarrierError, PlaceCall, PlacedCall};
use futures::future::BoxFuture;

use super::rest::{
    self, AmdMode, CallEvent, CallUpdate, CreateCall, TwilioAuth, TwilioClient, TwilioError,
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
}
