//! Call recordings in the simulator (Twilio's Recordings resource): `POST
//! Calls/{CallSid}/Recordings.json` starts a dual-channel recording of a live call; the
//! media stream writes what the caller sent (channel 1) and what the server played
//! (channel 2) on the call's clock, so silences and talk-over land where they happened;
//! the call's end completes it and sends the signed `RecordingStatusCallback`
//! (`completed`, with the duration); `GET Recordings/{Sid}.wav` serves it as a RIFF WAV —
//! G.711 μ-law (format tag 7), 8 kHz, 2 channels interleaved, with a `fact` chunk —
//! honouring `Range` (206, or 416 with `Content-Range: bytes */len`); `GET
//! Recordings/{Sid}.json` and `DELETE Recordings/{Sid}.json` (204; 404 after).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::call::CallRunner;
use super::resource::ApiError;
use super::shared::{Shared, lock};
use super::state::{CallStatus, WebhookKind};
use super::webhook::{self, API_VERSION};

/// μ-law silence.
const SILENCE: u8 = 0xFF;
/// Samples (bytes) per millisecond at 8 kHz μ-law.
const SAMPLES_PER_MS: u128 = 8;

/// Which channel audio goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Track {
    /// Channel 1: the caller (what the media stream sent the server).
    Caller,
    /// Channel 2: what the server played to the caller.
    Played,
}

/// One recording.
#[derive(Debug, Clone)]
pub(crate) struct SimRecording {
    pub sid: String,
    pub account_sid: String,
    pub call_sid: String,
    pub status: String,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration_secs: Option<u64>,
    pub caller: Vec<u8>,
    pub played: Vec<u8>,
    pub callback: Option<(String, String)>,
    pub events: Vec<String>,
    pub deleted: bool,
}

/// Writes `bytes` at `offset` samples, padding with silence before it and overwriting what
/// it overlaps.
fn write_at(buf: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if buf.len() < offset {
        buf.resize(offset, SILENCE);
    }
    let overlap = (buf.len() - offset).min(bytes.len());
    buf[offset..offset + overlap].copy_from_slice(&bytes[..overlap]);
    buf.extend_from_slice(&bytes[overlap..]);
}

impl SimRecording {
    fn offset(&self, at: Instant) -> usize {
        let ms = at.saturating_duration_since(self.started).as_micros() * SAMPLES_PER_MS / 1000;
        usize::try_from(ms).unwrap_or(usize::MAX)
    }

    /// The RIFF WAV: μ-law, 8 kHz, two channels interleaved (caller, played).
    pub fn wav(&self) -> Vec<u8> {
        let frames = self.caller.len().max(self.played.len());
        let data_len = frames * 2;
        let mut out = Vec::with_capacity(58 + data_len);
        let u32le = |v: usize| u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&u32le(50 + data_len));
        out.extend_from_slice(b"WAVE");
        out.extend_from_slice(b"fmt ");
        out.extend_from_slice(&18u32.to_le_bytes());
        out.extend_from_slice(&7u16.to_le_bytes()); // WAVE_FORMAT_MULAW
        out.extend_from_slice(&2u16.to_le_bytes()); // channels
        out.extend_from_slice(&8000u32.to_le_bytes()); // sample rate
        out.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
        out.extend_from_slice(&2u16.to_le_bytes()); // block align
        out.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
        out.extend_from_slice(&0u16.to_le_bytes()); // cbSize
        out.extend_from_slice(b"fact");
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&u32le(frames));
        out.extend_from_slice(b"data");
        out.extend_from_slice(&u32le(data_len));
        for i in 0..frames {
            out.push(self.caller.get(i).copied().unwrap_or(SILENCE));
            out.push(self.played.get(i).copied().unwrap_or(SILENCE));
        }
        out
    }

    fn json(&self) -> Value {
        let rfc2822 = |t: chrono::DateTime<chrono::Utc>| t.to_rfc2822().replace("+0000", "GMT");
        let duration = self
            .duration_secs
            .map_or_else(|| String::from("-1"), |d| d.to_string());
        json!({
            "sid": self.sid,
            "account_sid": self.account_sid,
            "call_sid": self.call_sid,
            "api_version": API_VERSION,
            "status": self.status,
            "channels": 2,
            "source": "StartCallRecordingAPI",
            "track": "both",
            "duration": duration,
            "start_time": rfc2822(self.started_at),
            "date_created": rfc2822(self.started_at),
            "date_updated": rfc2822(self.started_at),
            "error_code": null,
            "uri": format!("/{API_VERSION}/Accounts/{}/Recordings/{}.json", self.account_sid, self.sid),
        })
    }
}

impl Shared {
    /// Adds audio of `call` heard at `at` to its recordings in progress (cheap when none).
    pub(crate) fn record_audio(&self, call: &str, track: Track, at: Instant, bytes: &[u8]) {
        if self.recordings_live.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut recordings = lock(&self.recordings);
        for r in recordings
            .iter_mut()
            .filter(|r| r.call_sid == call && r.status == "in-progress")
        {
            let offset = r.offset(at);
            match track {
                Track::Caller => write_at(&mut r.caller, offset, bytes),
                Track::Played => write_at(&mut r.played, offset, bytes),
            }
        }
    }

    /// A `clear`: what was queued to play after `at` was never played.
    pub(crate) fn record_clear(&self, call: &str, at: Instant) {
        if self.recordings_live.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut recordings = lock(&self.recordings);
        for r in recordings
            .iter_mut()
            .filter(|r| r.call_sid == call && r.status == "in-progress")
        {
            let offset = r.offset(at);
            r.played.truncate(offset);
        }
    }

    /// A recording by SID (deleted ones included).
    pub(crate) fn recording(&self, sid: &str) -> Option<SimRecording> {
        lock(&self.recordings)
            .iter()
            .find(|r| r.sid == sid)
            .cloned()
    }
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        404,
        20404,
        format!("The requested resource {path} was not found"),
    )
}

/// `POST Calls/{CallSid}/Recordings.json`.
pub(crate) fn create(
    shared: &Arc<Shared>,
    account: &str,
    call_sid: &str,
    path: &str,
    params: &[(String, String)],
) -> Result<(u16, Value), ApiError> {
    let entry = shared
        .call(call_sid)
        .filter(|e| e.state.borrow().account_sid == account)
        .ok_or_else(|| not_found(path))?;
    if entry.state.borrow().status != CallStatus::InProgress {
        return Err(ApiError::new(
            400,
            21220,
            "Requested resource is not eligible for recording",
        ));
    }
    let value = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let channels = value("RecordingChannels").unwrap_or_else(|| "mono".into());
    if channels != "dual" && channels != "mono" {
        return Err(ApiError::new(
            400,
            21200,
            "RecordingChannels must be mono or dual",
        ));
    }
    let callback = value("RecordingStatusCallback").map(|url| {
        let method = match value("RecordingStatusCallbackMethod") {
            Some(m) if m.eq_ignore_ascii_case("GET") => String::from("GET"),
            _ => String::from("POST"),
        };
        (url, method)
    });
    let events: Vec<String> = value("RecordingStatusCallbackEvent")
        .map(|e| {
            e.split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_else(|| vec![String::from("completed")]);
    let recording = SimRecording {
        sid: format!("RE{}", uuid::Uuid::new_v4().simple()),
        account_sid: account.to_owned(),
        call_sid: call_sid.to_owned(),
        status: String::from("in-progress"),
        started: Instant::now(),
        started_at: chrono::Utc::now(),
        duration_secs: None,
        caller: Vec::new(),
        played: Vec::new(),
        callback,
        events,
        deleted: false,
    };
    let body = recording.json();
    if recording.events.iter().any(|e| e == "in-progress") {
        send_callback(shared, &recording);
    }
    lock(&shared.recordings).push(recording);
    shared.recordings_live.fetch_add(1, Ordering::Relaxed);
    Ok((201, body))
}

/// `GET Recordings/{Sid}.json` and `DELETE Recordings/{Sid}.json`.
pub(crate) fn resource(
    shared: &Shared,
    account: &str,
    sid: &str,
    path: &str,
    delete: bool,
) -> Result<(u16, Value), ApiError> {
    let mut recordings = lock(&shared.recordings);
    let r = recordings
        .iter_mut()
        .find(|r| r.sid == sid && r.account_sid == account && !r.deleted)
        .ok_or_else(|| not_found(path))?;
    if !delete {
        return Ok((200, r.json()));
    }
    r.deleted = true;
    if r.status == "in-progress" {
        r.status = String::from("stopped");
        shared.recordings_live.fetch_sub(1, Ordering::Relaxed);
    }
    r.caller = Vec::new();
    r.played = Vec::new();
    Ok((204, Value::Null))
}

/// A media answer: status, headers, body.
pub(crate) type MediaAnswer = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// `GET Recordings/{Sid}.wav`: the WAV, or the `Range` asked for. `Err` for a JSON error.
pub(crate) fn media(
    shared: &Shared,
    account: &str,
    sid: &str,
    path: &str,
    range: Option<&str>,
) -> Result<MediaAnswer, ApiError> {
    let wav = {
        let recordings = lock(&shared.recordings);
        let r = recordings
            .iter()
            .find(|r| r.sid == sid && r.account_sid == account && !r.deleted)
            .ok_or_else(|| not_found(path))?;
        r.wav()
    };
    let len = wav.len();
    let mut headers = vec![
        ("content-type", String::from("audio/x-wav")),
        ("accept-ranges", String::from("bytes")),
    ];
    let Some(range) = range else {
        return Ok((200, headers, wav));
    };
    match byte_range(range, len) {
        Some((start, end)) => {
            headers.push(("content-range", format!("bytes {start}-{end}/{len}")));
            Ok((206, headers, wav[start..=end].to_vec()))
        }
        None => {
            headers.push(("content-range", format!("bytes */{len}")));
            Ok((416, headers, Vec::new()))
        }
    }
}

/// A single `bytes=` range of a body of `len` bytes, inclusive; `None` when unsatisfiable.
fn byte_range(header: &str, len: usize) -> Option<(usize, usize)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        let suffix: usize = end.parse().ok()?;
        if suffix == 0 {
            return None;
        }
        return Some((len.saturating_sub(suffix), len - 1));
    }
    let start: usize = start.parse().ok()?;
    if start >= len {
        return None;
    }
    let end = if end.is_empty() {
        len - 1
    } else {
        end.parse::<usize>().ok()?.min(len - 1)
    };
    (start <= end).then_some((start, end))
}

/// Sends the recording's status callback (signed with its account's token) in a task.
fn send_callback(shared: &Arc<Shared>, r: &SimRecording) {
    let Some((url, method)) = r.callback.clone() else {
        return;
    };
    let Some(token) = shared.token(&r.account_sid) else {
        return;
    };
    let mut params = vec![
        ("AccountSid".to_owned(), r.account_sid.clone()),
        ("CallSid".to_owned(), r.call_sid.clone()),
        ("RecordingSid".to_owned(), r.sid.clone()),
        (
            "RecordingUrl".to_owned(),
            format!(
                "https://api.twilio.com/{API_VERSION}/Accounts/{}/Recordings/{}",
                r.account_sid, r.sid
            ),
        ),
        ("RecordingStatus".to_owned(), r.status.clone()),
        ("RecordingChannels".to_owned(), "2".to_owned()),
        (
            "RecordingStartTime".to_owned(),
            r.started_at.to_rfc2822().replace("+0000", "GMT"),
        ),
        (
            "RecordingSource".to_owned(),
            "StartCallRecordingAPI".to_owned(),
        ),
        ("RecordingTrack".to_owned(), "both".to_owned()),
    ];
    if let Some(d) = r.duration_secs {
        params.push(("RecordingDuration".to_owned(), d.to_string()));
    }
    params.push(("ErrorCode".to_owned(), "0".to_owned()));
    let (http, sid) = (shared.http.clone(), r.sid.clone());
    let _ = shared.spawn(async move {
        let (record, _) = webhook::send(
            &http,
            &token,
            WebhookKind::RecordingStatus,
            &method,
            &url,
            params,
        )
        .await;
        tracing::debug!(recording = %sid, status = ?record.status, "recording status callback sent");
    });
}

impl CallRunner {
    /// The call ended: its recordings in progress complete, each with its callback.
    pub(super) async fn complete_recordings(&self) {
        let completed: Vec<SimRecording> = {
            let mut recordings = lock(&self.shared.recordings);
            recordings
                .iter_mut()
                .filter(|r| r.call_sid == self.id.sid && r.status == "in-progress")
                .map(|r| {
                    r.status = String::from("completed");
                    r.duration_secs = Some(r.started.elapsed().as_secs_f64().round() as u64);
                    r.clone()
                })
                .collect()
        };
        for r in &completed {
            self.shared.recordings_live.fetch_sub(1, Ordering::Relaxed);
            if r.events.iter().any(|e| e == "completed") {
                send_callback(&self.shared, r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_as_http_says() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=5-1", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }

    #[test]
    fn audio_lands_where_it_was_heard() {
        let mut buf = Vec::new();
        write_at(&mut buf, 4, &[1, 2]);
        assert_eq!(buf, vec![SILENCE, SILENCE, SILENCE, SILENCE, 1, 2]);
        write_at(&mut buf, 5, &[3, 4]);
        assert_eq!(buf, vec![SILENCE, SILENCE, SILENCE, SILENCE, 1, 3, 4]);
    }
}
