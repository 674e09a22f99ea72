//! The response gate: what the runtime knows of the model's responses, so that it asks for a
//! response (`response.create`) only when none is active **or requested**.
//!
//! A request is *in flight* from the moment it is sent (not when `response.created` comes
//! back a round trip later). It is tagged with its `event_id`, which the model echoes in the
//! response's `metadata` (`{"request": id}`) and in the `error` that refuses it. A response
//! the server starts on its own (server VAD answering the caller) is *active* without being
//! ours; a request sent meanwhile is refused with `conversation_already_has_active_response`,
//! and the gate hands it back to be asked for again once that response is done.
//!
//! Which request goes next, and when, is decided by the conversation's pump; the gate only
//! says whether the line is free and whose responses are which.

use std::collections::BTreeMap;

use crate::realtime::{ClientEvent, ResponseParams};

/// Key of the request tag in the response's `metadata`.
pub const REQUEST_TAG: &str = "request";

/// Why the runtime asks for a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// The greeting.
    Greeting,
    /// The line of a resumed stream ("I'm back with you").
    Resume,
    /// An exact line of the runtime (handoff, goodbye, callback notice), by line epoch.
    Line(u64),
    /// The model speaks about tool outputs (and, when a line waits for it, says that line).
    Outputs,
    /// The model answers key presses.
    Dtmf,
    /// A slow tool's filler (model call id); never asked for twice.
    Filler(String),
}

impl Purpose {
    fn prefix(&self) -> &'static str {
        match self {
            Purpose::Greeting => "greeting",
            Purpose::Resume => "resume",
            Purpose::Line(_) => "line",
            Purpose::Outputs => "outputs",
            Purpose::Dtmf => "dtmf",
            Purpose::Filler(_) => "filler",
        }
    }
}

/// A request of ours: its `event_id` and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The `event_id` (also the metadata tag).
    pub event_id: String,
    /// Why it was sent.
    pub purpose: Purpose,
    /// Its sequence number (names its timeout).
    pub seq: u64,
}

/// The response the model is generating.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Active {
    response_id: String,
    /// Our request it answers (`None`: the server started it).
    request: Option<Request>,
}

/// What the runtime knows of the model's responses.
#[derive(Debug, Default)]
pub struct ResponseGate {
    active: Option<Active>,
    in_flight: Option<Request>,
    seq: u64,
}

impl ResponseGate {
    /// Whether a request may be sent now: no response active and none requested.
    pub fn is_free(&self) -> bool {
        self.active.is_none() && self.in_flight.is_none()
    }

    /// Whether any response is active or requested.
    pub fn is_busy(&self) -> bool {
        !self.is_free()
    }

    /// Sends a request for `purpose` (with `instructions` for this response only): the
    /// request is in flight from now. Returns the client event and the request.
    pub fn send(
        &mut self,
        purpose: Purpose,
        instructions: Option<String>,
    ) -> (ClientEvent, Request) {
        self.seq += 1;
        let event_id = format!("{}_{}", purpose.prefix(), self.seq);
        let request = Request {
            event_id: event_id.clone(),
            purpose,
            seq: self.seq,
        };
        let params = ResponseParams {
            instructions,
            metadata: Some(BTreeMap::from([(REQUEST_TAG.to_owned(), event_id.clone())])),
            ..ResponseParams::default()
        };
        self.in_flight = Some(request.clone());
        (
            ClientEvent::response_with(params).with_event_id(event_id),
            request,
        )
    }

    /// `response.created` with the request tag it carries (if any). Returns our request it
    /// answers. A response without any tag is taken to answer the request in flight (a model
    /// that does not echo metadata); should that request be refused after all, the response
    /// is the server's ([`refused`](Self::refused) corrects it).
    pub fn created(&mut self, response_id: &str, tag: Option<&str>) -> Option<Request> {
        let ours = match (tag, &self.in_flight) {
            (Some(tag), Some(r)) if r.event_id == tag => self.in_flight.take(),
            (Some(_), _) => None,
            (None, Some(_)) => self.in_flight.take(),
            (None, None) => None,
        };
        self.active = Some(Active {
            response_id: response_id.to_owned(),
            request: ours.clone(),
        });
        ours
    }

    /// `response.done`: the response is over. Returns our request it answered.
    pub fn done(&mut self, response_id: &str) -> Option<Request> {
        match &self.active {
            Some(a) if a.response_id == response_id || a.response_id.is_empty() => {
                self.active.take().and_then(|a| a.request)
            }
            _ => None,
        }
    }

    /// The model refused request `event_id` because a response is active: returns the
    /// request, to be asked for again once that response is done.
    pub fn refused(&mut self, event_id: Option<&str>) -> Option<Request> {
        let event_id = event_id?;
        let refused = match &self.in_flight {
            Some(r) if r.event_id == event_id => self.in_flight.take(),
            _ => match &mut self.active {
                // A response we took for the answer to this request was the server's.
                Some(a) if a.request.as_ref().is_some_and(|r| r.event_id == event_id) => {
                    a.request.take()
                }
                _ => None,
            },
        };
        if refused.is_some() && self.active.is_none() {
            // Something is active that we have not heard of yet: wait for its `done`.
            self.active = Some(Active {
                response_id: String::new(),
                request: None,
            });
        }
        refused
    }

    /// Any other error about request `event_id`: it will never be answered. Returns it.
    pub fn failed(&mut self, event_id: Option<&str>) -> Option<Request> {
        let event_id = event_id?;
        match &self.in_flight {
            Some(r) if r.event_id == event_id => self.in_flight.take(),
            _ => None,
        }
    }

    /// Request `seq` got no answer in time: it is dropped so the gate cannot stay shut.
    pub fn expired(&mut self, seq: u64) -> Option<Request> {
        match &self.in_flight {
            Some(r) if r.seq == seq => self.in_flight.take(),
            _ => None,
        }
    }

    /// The AI connection changed: nothing is active on the new one. Returns the request that
    /// was in flight, or whose response was active, on the old one.
    pub fn reset(&mut self) -> Option<Request> {
        let in_flight = self.in_flight.take();
        let active = self.active.take().and_then(|a| a.request);
        in_flight.or(active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_in_flight_until_created_and_active_until_done() {
        let mut gate = ResponseGate::default();
        assert!(gate.is_free());
        let (event, request) = gate.send(Purpose::Greeting, Some("Say exactly: Hi".into()));
        assert_eq!(request.event_id, "greeting_1");
        assert_eq!(event.kind(), "response.create");
        let json = event.to_json().expect("json");
        assert!(
            json.contains(r#""metadata":{"request":"greeting_1"}"#),
            "{json}"
        );
        assert!(!gate.is_free(), "busy before response.created");
        assert_eq!(
            gate.created("resp_1", Some("greeting_1")),
            Some(request.clone())
        );
        assert!(!gate.is_free());
        assert_eq!(gate.done("resp_other"), None);
        assert!(!gate.is_free());
        assert_eq!(gate.done("resp_1"), Some(request));
        assert!(gate.is_free());
    }

    #[test]
    fn a_server_response_refuses_ours_which_comes_back() {
        let mut gate = ResponseGate::default();
        let (_, line) = gate.send(Purpose::Line(1), None);
        // Server VAD's reply was created first; ours is refused.
        assert_eq!(gate.created("resp_vad", None), Some(line.clone()));
        assert_eq!(gate.refused(Some(&line.event_id)), Some(line.clone()));
        assert!(!gate.is_free(), "the server's response is active");
        assert_eq!(gate.done("resp_vad"), None, "not ours");
        assert!(gate.is_free());
        // Tagged correctly, a server response is never taken for ours.
        let (_, outputs) = gate.send(Purpose::Outputs, None);
        assert_eq!(gate.created("resp_vad2", Some("line_9")), None);
        assert_eq!(gate.refused(Some(&outputs.event_id)), Some(outputs));
        assert_eq!(gate.refused(Some("unknown")), None);
    }

    #[test]
    fn a_refusal_before_the_created_event_keeps_the_gate_shut_until_a_done() {
        let mut gate = ResponseGate::default();
        let (_, r) = gate.send(Purpose::Dtmf, None);
        assert_eq!(gate.refused(Some(&r.event_id)), Some(r));
        assert!(!gate.is_free());
        assert_eq!(gate.done("resp_any"), None);
        assert!(gate.is_free());
    }

    #[test]
    fn lost_requests_expire_and_a_new_connection_starts_free() {
        let mut gate = ResponseGate::default();
        let (_, r) = gate.send(Purpose::Outputs, None);
        assert_eq!(gate.expired(r.seq + 1), None);
        assert_eq!(gate.expired(r.seq), Some(r));
        assert!(gate.is_free());
        let (_, r) = gate.send(Purpose::Line(2), None);
        assert_eq!(gate.created("resp", Some(&r.event_id)), Some(r.clone()));
        assert_eq!(gate.reset(), Some(r));
        assert!(gate.is_free());
        let (_, r) = gate.send(Purpose::Dtmf, None);
        assert_eq!(gate.failed(Some(&r.event_id)), Some(r));
        assert!(gate.is_free());
    }
}
