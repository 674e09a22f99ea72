//! Conferences (`<Dial><Conference>`): rooms by account and friendly name, participants
//! joining and leaving, hold audio for those waiting until a participant with
//! `startConferenceOnEnter=true` joins, and the end when a participant with
//! `endConferenceOnExit=true` leaves or the last one does. The conference's status callback
//! (the first participant's `statusCallback` wins, as on Twilio) gets the events it asked
//! for (`start end join leave`), signed with the account's token, with `ConferenceSid`,
//! `FriendlyName`, `StatusCallbackEvent`, `CallSid` (participant events) and
//! `SequenceNumber`.
//!
//! Each participant runs in its own call's task ([`super::call::CallRunner`]): it joins,
//! waits until the room ends (or, for a simulated operator who started it, until their talk
//! time is over) or a REST update takes it out, then leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::twilio::twiml::Conference;

use super::shared::lock;
use super::state::{CallEvent, ConferenceRecord};
use super::webhook::rfc2822_now;

/// Conferences of every account, by `(account, friendly name)`; an ended room is replaced
/// by a new one when someone joins the name again.
#[derive(Default)]
pub(crate) struct Rooms {
    rooms: Mutex<HashMap<(String, String), Arc<Room>>>,
    /// Every room ever created, in order (what snapshots read).
    history: Mutex<Vec<Arc<Room>>>,
}

/// One conference.
pub(crate) struct Room {
    pub sid: String,
    pub name: String,
    state: Mutex<RoomState>,
    phase: watch::Sender<u8>,
}

/// Nobody has started the conference yet.
const WAITING: u8 = 0;
/// A participant with `startConferenceOnEnter` joined: everyone is bridged.
pub(crate) const STARTED: u8 = 1;
/// The conference ended.
pub(crate) const ENDED: u8 = 2;

#[derive(Default)]
struct RoomState {
    participants: Vec<Participant>,
    started: bool,
    ended: bool,
    callback: Option<Callback>,
    sequence: u32,
    record: ConferenceRecord,
}

#[derive(Clone)]
struct Participant {
    call_sid: String,
    start_on_enter: bool,
    end_on_exit: bool,
}

/// The conference's status callback.
#[derive(Clone)]
pub(crate) struct Callback {
    pub url: String,
    pub method: String,
    events: Vec<String>,
}

/// One status-callback request to send: (url, method, params).
pub(crate) type Notice = (String, String, Vec<(String, String)>);

impl Rooms {
    /// The live room named `name` of `account`, created if there is none.
    pub fn room(&self, account: &str, name: &str) -> Arc<Room> {
        let key = (account.to_owned(), name.to_owned());
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(&key)
            && !lock(&room.state).ended
        {
            return room.clone();
        }
        let room = Arc::new(Room {
            sid: format!("CF{}", uuid::Uuid::new_v4().simple()),
            name: name.to_owned(),
            state: Mutex::new(RoomState {
                record: ConferenceRecord {
                    sid: String::new(),
                    name: name.to_owned(),
                    account_sid: account.to_owned(),
                    ..ConferenceRecord::default()
                },
                ..RoomState::default()
            }),
            phase: watch::Sender::new(WAITING),
        });
        lock(&room.state).record.sid = room.sid.clone();
        rooms.insert(key, room.clone());
        lock(&self.history).push(room.clone());
        room
    }

    /// Every conference so far, in creation order.
    pub fn records(&self) -> Vec<ConferenceRecord> {
        lock(&self.history)
            .iter()
            .map(|r| lock(&r.state).record.clone())
            .collect()
    }
}

/// What a join did.
pub(crate) struct Joined {
    /// The conference had not started: the participant hears hold audio.
    pub waiting: bool,
    /// Status callbacks to send, in order.
    pub notices: Vec<Notice>,
}

impl Room {
    /// `call_sid` joins with the `<Conference>` attributes `c`.
    pub fn join(&self, account: &str, call_sid: &str, c: &Conference) -> Joined {
        let mut st = lock(&self.state);
        if st.callback.is_none()
            && let Some(url) = &c.status_callback
        {
            st.callback = Some(Callback {
                url: url.clone(),
                method: c
                    .status_callback_method
                    .clone()
                    .unwrap_or_else(|| "POST".into()),
                events: c
                    .status_callback_event
                    .as_deref()
                    .unwrap_or("")
                    .split([' ', ','])
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned)
                    .collect(),
            });
        }
        let start = c.start_conference_on_enter.unwrap_or(true);
        let p = Participant {
            call_sid: call_sid.to_owned(),
            start_on_enter: start,
            end_on_exit: c.end_conference_on_exit.unwrap_or(false),
        };
        st.participants.push(p.clone());
        st.record.participants.push(call_sid.to_owned());
        let mut notices = Vec::new();
        let mut starts = false;
        if start && !st.started {
            st.started = true;
            st.record.started = true;
            starts = true;
            self.phase.send_replace(STARTED);
        }
        if let Some(n) = self.notice(&mut st, account, "participant-join", Some(&p), &[]) {
            notices.push(n);
        }
        if starts && let Some(n) = self.notice(&mut st, account, "conference-start", None, &[]) {
            notices.push(n);
        }
        let waiting = !st.started;
        Joined { waiting, notices }
    }

    /// Where the conference is: [`WAITING`], [`STARTED`] or [`ENDED`].
    pub fn phase(&self) -> u8 {
        *self.phase.borrow()
    }

    /// Resolves once the conference is at `phase` or later.
    pub async fn wait_phase(&self, phase: u8) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|p| *p >= phase).await;
    }

    /// `call_sid` leaves; returns the callbacks to send (its `participant-leave`, and
    /// `conference-end` when its leaving ends the conference).
    pub fn leave(&self, account: &str, call_sid: &str) -> Vec<Notice> {
        let mut st = lock(&self.state);
        let Some(i) = st.participants.iter().position(|p| p.call_sid == call_sid) else {
            return Vec::new();
        };
        let p = st.participants.remove(i);
        let mut notices = Vec::new();
        if let Some(n) = self.notice(&mut st, account, "participant-leave", Some(&p), &[]) {
            notices.push(n);
        }
        if st.ended {
            return notices;
        }
        let reason = if p.end_on_exit {
            Some("participant-with-end-conference-on-exit-left")
        } else if st.participants.is_empty() {
            Some("last-participant-left")
        } else {
            None
        };
        if let Some(reason) = reason {
            st.ended = true;
            st.record.ended = true;
            st.record.end_reason = Some(reason.to_owned());
            let extra = [
                ("ReasonConferenceEnded", reason),
                ("CallSidEndingConference", call_sid),
            ];
            if let Some(n) = self.notice(&mut st, account, "conference-end", None, &extra) {
                notices.push(n);
            }
            self.phase.send_replace(ENDED);
        }
        notices
    }

    /// The status callback of `event`, if the conference asked for it.
    fn notice(
        &self,
        st: &mut RoomState,
        account: &str,
        event: &str,
        p: Option<&Participant>,
        extra: &[(&str, &str)],
    ) -> Option<Notice> {
        st.record.events.push(match p {
            Some(p) => format!("{event}:{}", p.call_sid),
            None => event.to_owned(),
        });
        let cb = st.callback.clone()?;
        let short = event
            .strip_prefix("participant-")
            .or_else(|| event.strip_prefix("conference-"))
            .unwrap_or(event);
        if !cb.events.iter().any(|e| e == short) {
            return None;
        }
        let sequence = st.sequence;
        st.sequence += 1;
        let mut params: Vec<(String, String)> = vec![
            ("AccountSid".into(), account.to_owned()),
            ("ConferenceSid".into(), self.sid.clone()),
            ("FriendlyName".into(), self.name.clone()),
            ("StatusCallbackEvent".into(), event.to_owned()),
            ("Timestamp".into(), rfc2822_now()),
            ("SequenceNumber".into(), sequence.to_string()),
        ];
        if let Some(p) = p {
            params.push(("CallSid".into(), p.call_sid.clone()));
            params.push(("Muted".into(), "false".into()));
            params.push(("Hold".into(), "false".into()));
            params.push(("Coaching".into(), "false".into()));
            params.push(("EndConferenceOnExit".into(), p.end_on_exit.to_string()));
            params.push((
                "StartConferenceOnEnter".into(),
                p.start_on_enter.to_string(),
            ));
        }
        for (k, v) in extra {
            params.push(((*k).to_owned(), (*v).to_owned()));
        }
        Some((cb.url, cb.method, params))
    }
}

/// The event a participant's call records on joining.
pub(crate) fn joined_event(room: &Room, c: &Conference, waiting: bool) -> CallEvent {
    CallEvent::ConferenceJoined {
        name: room.name.clone(),
        conference_sid: room.sid.clone(),
        waiting,
        hold_audio: waiting.then(|| {
            c.wait_url
                .clone()
                .unwrap_or_else(|| String::from("default"))
        }),
    }
}

/// How long a simulated operator who started a conference stays before hanging up.
pub(crate) fn talk_time(talk: Option<Duration>) -> Duration {
    talk.unwrap_or(Duration::from_millis(500))
}
