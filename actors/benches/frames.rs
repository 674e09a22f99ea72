//! The per-frame work of the media path in each direction, with allocations counted per
//! frame by a counting global allocator.
//!
//! "before" is the code as it was before issue 13 (kept here, verbatim in effect: the full
//! `TwilioInbound` and `ServerEvent` parses, base64 decoded into a zeroed 8 KiB buffer, the
//! serde-built Twilio messages, the copied text frame); "after" is the code the pumps run
//! (`actors::call::frames`). The socket rows read one 20 ms frame per `read` through
//! tungstenite, as a socket delivers them, with its default buffers (what warp gave the media
//! route) and with the media route's configuration.
//!
//! `cargo bench -p stateset-voice-actors --bench frames` prints the allocation table, then
//! criterion's timings. Instructions per frame, which do not depend on what else the machine
//! runs: `FRAMES_ALLOCATIONS_ONLY=1 valgrind --tool=callgrind <the bench binary>`, then
//! `callgrind_annotate --inclusive=yes` (each function runs 20,100 times).

use std::alloc::System;
use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actors::call::frames::{
    AiFrame, CallerFrame, MAX_FRAME_BYTES, decoded_len, mark_text, media_text, sniff_ai,
    sniff_caller, valid_audio,
};
use actors::call::playback::{DeltaVerdict, Playback, mark_name};
use actors::media::TwilioInbound;
use actors::realtime::{ServerEvent, append_json};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, criterion_group};
use serde::Serialize;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const STREAM_SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
const ITEM: &str = "item_CUbgHWbHnTaL3qQHvXgZ8";
const RESPONSE: &str = "resp_CUbgHBNAh2bp7SF2kcSbT";

/// 20 ms of μ-law, base64 (216 characters).
fn payload() -> String {
    STANDARD.encode((0..160u8).map(|i| i.wrapping_mul(37)).collect::<Vec<u8>>())
}

fn caller_frame() -> String {
    format!(
        r#"{{"event":"media","sequenceNumber":"42","streamSid":"{STREAM_SID}","media":{{"track":"inbound","chunk":"41","timestamp":"820","payload":"{}"}}}}"#,
        payload()
    )
}

fn mark_echo() -> String {
    format!(
        r#"{{"event":"mark","sequenceNumber":"43","streamSid":"{STREAM_SID}","mark":{{"name":"0:1220:{ITEM}"}}}}"#
    )
}

fn ai_delta() -> String {
    format!(
        r#"{{"type":"response.output_audio.delta","event_id":"event_CUbgHbB2KZ6fVhhyrj4Kb","response_id":"{RESPONSE}","item_id":"{ITEM}","output_index":0,"content_index":0,"delta":"{}"}}"#,
        payload()
    )
}

// ---- before ---------------------------------------------------------------------------

fn before_valid_audio(payload: &str) -> bool {
    let mut buf = [0u8; MAX_FRAME_BYTES];
    !payload.is_empty() && STANDARD.decode_slice(payload, &mut buf).is_ok()
}

#[derive(Serialize)]
struct MediaFrame<'a> {
    event: &'static str,
    #[serde(rename = "streamSid")]
    stream_sid: &'a str,
    media: Payload<'a>,
}

#[derive(Serialize)]
struct Payload<'a> {
    payload: &'a str,
}

#[derive(Serialize)]
#[serde(bound(serialize = "N: std::fmt::Display"))]
struct MarkFrame<'a, N: std::fmt::Display> {
    event: &'static str,
    #[serde(rename = "streamSid")]
    stream_sid: &'a str,
    mark: MarkBody<N>,
}

struct MarkBody<N>(N);

impl<N: std::fmt::Display> Serialize for MarkBody<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("name", &format_args!("{}", self.0))?;
        map.end()
    }
}

fn before_media_text(stream_sid: &str, payload: &str) -> String {
    let mut out = Vec::with_capacity(payload.len() + stream_sid.len() + 64);
    let frame = MediaFrame {
        event: "media",
        stream_sid,
        media: Payload { payload },
    };
    let _ = serde_json::to_writer(&mut out, &frame);
    String::from_utf8(out).unwrap_or_default()
}

fn before_mark_text(stream_sid: &str, epoch: u64, cumulative_ms: u64, item: &str) -> String {
    let mut out = Vec::with_capacity(stream_sid.len() + item.len() + 80);
    let frame = MarkFrame {
        event: "mark",
        stream_sid,
        mark: MarkBody(mark_name(epoch, cumulative_ms, item)),
    };
    let _ = serde_json::to_writer(&mut out, &frame);
    String::from_utf8(out).unwrap_or_default()
}

/// Caller → model, before: the route copied the text frame, the reader parsed it in full,
/// decoded the base64 into a zeroed buffer, and wrote the append.
#[inline(never)]
fn caller_before(frame: &Utf8Bytes) -> Option<String> {
    let text = frame.as_str().to_owned();
    match TwilioInbound::parse(&text) {
        Ok(TwilioInbound::Media { media, .. }) if before_valid_audio(&media.payload) => {
            Some(append_json(&media.payload))
        }
        _ => None,
    }
}

/// Caller → model, after.
#[inline(never)]
fn caller_after(frame: &Utf8Bytes) -> Option<String> {
    match sniff_caller(frame.as_str()) {
        Ok(CallerFrame::Media(payload)) if valid_audio(payload.as_str()) => {
            Some(append_json(payload.as_str()))
        }
        _ => None,
    }
}

/// A mark echo, before: copied and parsed in full.
#[inline(never)]
fn mark_before(frame: &Utf8Bytes, playback: &Mutex<Playback>) {
    let text = frame.as_str().to_owned();
    if let Ok(TwilioInbound::Mark { mark, .. }) = TwilioInbound::parse(&text)
        && let Ok(mut p) = playback.lock()
    {
        black_box(p.on_mark(&mark.name, Instant::now()));
    }
}

/// A mark echo, after: the name borrowed.
#[inline(never)]
fn mark_after(frame: &Utf8Bytes, playback: &Mutex<Playback>) {
    if let Ok(CallerFrame::Mark(name)) = sniff_caller(frame.as_str())
        && let Ok(mut p) = playback.lock()
    {
        black_box(p.on_mark(name.as_str(), Instant::now()));
    }
}

/// Model → caller, before: envelope and typed parse (owned strings), the serde messages.
#[inline(never)]
fn ai_before(text: &str, playback: &Mutex<Playback>) -> Option<(String, String)> {
    let Ok(ServerEvent::AudioDelta(d)) = ServerEvent::parse(text) else {
        return None;
    };
    let verdict = playback
        .lock()
        .ok()?
        .on_delta(&d.response_id, &d.item_id, decoded_len(&d.delta));
    match verdict {
        DeltaVerdict::Forward {
            epoch,
            cumulative_ms,
            ..
        } => Some((
            before_media_text(STREAM_SID, &d.delta),
            before_mark_text(STREAM_SID, epoch, cumulative_ms, &d.item_id),
        )),
        DeltaVerdict::Drop => None,
    }
}

/// Model → caller, after: one borrowed pass.
#[inline(never)]
fn ai_after(text: &str, playback: &Mutex<Playback>) -> Option<(String, String)> {
    let Ok(AiFrame::Audio(d)) = sniff_ai(text) else {
        return None;
    };
    let verdict = playback.lock().ok()?.on_delta(
        d.response_id.as_str(),
        d.item_id.as_str(),
        decoded_len(d.delta.as_str()),
    );
    match verdict {
        DeltaVerdict::Forward {
            epoch,
            cumulative_ms,
            ..
        } => Some((
            media_text(STREAM_SID, &d.delta),
            mark_text(STREAM_SID, epoch, cumulative_ms, d.item_id.as_str()),
        )),
        DeltaVerdict::Drop => None,
    }
}

// ---- the socket ---------------------------------------------------------------------------

/// A connection that delivers one frame per `read`, as a socket does with frames 20 ms
/// apart; what is written to it is discarded.
struct Trickle {
    frame: Vec<u8>,
    at: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.frame.len() - self.at);
        buf[..n].copy_from_slice(&self.frame[self.at..self.at + n]);
        self.at = (self.at + n) % self.frame.len();
        Ok(n)
    }
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes written by a client socket.
#[derive(Default)]
struct Wire(Vec<u8>);

impl Read for Wire {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Ok(0)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The caller frame as a masked client websocket frame.
fn wire_frame() -> Vec<u8> {
    let mut client = WebSocket::from_raw_socket(Wire::default(), Role::Client, None);
    client
        .send(Message::text(caller_frame()))
        .expect("encode the frame");
    std::mem::take(&mut client.get_mut().0)
}

/// What warp gave the media route: tungstenite's defaults with the route's limits.
fn warp_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

/// The media route's configuration now (`src/http/upgrade.rs`).
fn media_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

fn server(config: WebSocketConfig) -> WebSocket<Trickle> {
    WebSocket::from_raw_socket(
        Trickle {
            frame: wire_frame(),
            at: 0,
        },
        Role::Server,
        Some(config),
    )
}

#[inline(never)]
fn read_frame(socket: &mut WebSocket<Trickle>) -> Option<Utf8Bytes> {
    match socket.read() {
        Ok(Message::Text(text)) => Some(text),
        _ => None,
    }
}

/// A frame read through a socket with warp's buffers (a function of its own for callgrind).
#[inline(never)]
fn read_frame_warp(socket: &mut WebSocket<Trickle>) -> Option<Utf8Bytes> {
    // Distinct from `read_frame_media`, so the linker does not fold the two.
    black_box(1);
    read_frame(socket)
}

/// A frame read through a socket with the media route's buffers.
#[inline(never)]
fn read_frame_media(socket: &mut WebSocket<Trickle>) -> Option<Utf8Bytes> {
    black_box(2);
    read_frame(socket)
}

// ---- allocations per frame ----------------------------------------------------------------

/// Allocations and bytes allocated per run of `work`, over `n` runs after a warm-up.
fn per_frame(n: u32, mut work: impl FnMut()) -> (f64, f64) {
    for _ in 0..100 {
        work();
    }
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        work();
    }
    let stats = region.change();
    (
        stats.allocations as f64 / f64::from(n),
        (stats.bytes_allocated + stats.bytes_reallocated.max(0) as usize) as f64 / f64::from(n),
    )
}

/// Bytes held per socket after it has read one frame (net of what was freed).
fn per_socket(config: WebSocketConfig) -> f64 {
    const SOCKETS: usize = 200;
    let region = Region::new(GLOBAL);
    let mut sockets: Vec<_> = (0..SOCKETS).map(|_| server(config)).collect();
    for socket in &mut sockets {
        black_box(read_frame(socket));
    }
    let stats = region.change();
    drop(sockets);
    (stats.bytes_allocated as f64 - stats.bytes_deallocated as f64) / SOCKETS as f64
}

fn print_allocations() {
    const N: u32 = 20_000;
    let caller = Utf8Bytes::from(caller_frame());
    let echo = Utf8Bytes::from(mark_echo());
    let delta = ai_delta();
    let playback = Mutex::new(Playback::default());
    let rows: Vec<(&str, (f64, f64))> = vec![
        (
            "caller -> model, before",
            per_frame(N, || {
                black_box(caller_before(&caller));
            }),
        ),
        (
            "caller -> model, after",
            per_frame(N, || {
                black_box(caller_after(&caller));
            }),
        ),
        (
            "mark echo, before",
            per_frame(N, || mark_before(&echo, &playback)),
        ),
        (
            "mark echo, after",
            per_frame(N, || mark_after(&echo, &playback)),
        ),
        (
            "model -> caller, before",
            per_frame(N, || {
                black_box(ai_before(&delta, &playback));
            }),
        ),
        (
            "model -> caller, after",
            per_frame(N, || {
                black_box(ai_after(&delta, &playback));
            }),
        ),
        ("socket read, warp's buffers", {
            let mut socket = server(warp_config());
            per_frame(N, || {
                black_box(read_frame_warp(&mut socket));
            })
        }),
        ("socket read, media route's", {
            let mut socket = server(media_config());
            per_frame(N, || {
                black_box(read_frame_media(&mut socket));
            })
        }),
    ];
    println!("\nper frame                      allocations   bytes allocated");
    for (name, (allocations, bytes)) in rows {
        println!("{name:<30} {allocations:>11.2}   {bytes:>15.0}");
    }
    println!(
        "\nheld per socket after one frame: warp's buffers {:.0} B, the media route's {:.0} B\n",
        per_socket(warp_config()),
        per_socket(media_config())
    );
}

// ---- timings ------------------------------------------------------------------------------

fn frames(c: &mut Criterion) {
    let caller = Utf8Bytes::from(caller_frame());
    let echo = Utf8Bytes::from(mark_echo());
    let delta = ai_delta();
    let playback = Mutex::new(Playback::default());
    c.bench_function("caller_to_model/before", |b| {
        b.iter(|| caller_before(black_box(&caller)))
    });
    c.bench_function("caller_to_model/after", |b| {
        b.iter(|| caller_after(black_box(&caller)))
    });
    c.bench_function("mark_echo/before", |b| {
        b.iter(|| mark_before(black_box(&echo), &playback))
    });
    c.bench_function("mark_echo/after", |b| {
        b.iter(|| mark_after(black_box(&echo), &playback))
    });
    c.bench_function("model_to_caller/before", |b| {
        b.iter(|| ai_before(black_box(&delta), &playback))
    });
    c.bench_function("model_to_caller/after", |b| {
        b.iter(|| ai_after(black_box(&delta), &playback))
    });
    let mut warp = server(warp_config());
    c.bench_function("socket_read/warp_buffers", |b| {
        b.iter(|| read_frame_warp(&mut warp))
    });
    let mut media = server(media_config());
    c.bench_function("socket_read/media_route", |b| {
        b.iter(|| read_frame_media(&mut media))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = frames
}

/// The allocation table, then criterion's timings (only the table with
/// `FRAMES_ALLOCATIONS_ONLY=1`, e.g. under `valgrind --tool=callgrind`).
fn main() {
    print_allocations();
    if std::env::var_os("FRAMES_ALLOCATIONS_ONLY").is_some() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
