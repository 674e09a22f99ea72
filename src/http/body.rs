//! Request bodies, read incrementally and bounded, so a chunked body without
//! `Content-Length` is bounded too: JSON (415 for another content type) and forms (Twilio
//! webhooks); 413 beyond the configured limit.

use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use warp::Filter;
use warp::http::HeaderMap;

use super::ApiError;

/// A request's body, not yet read.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send>>;

/// Extracts the body stream (reading nothing).
pub fn stream() -> impl Filter<Extract = (BodyStream,), Error = warp::Rejection> + Clone {
    warp::body::stream().map(boxed)
}

fn boxed<S, B>(body: S) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    Box::pin(body.map_ok(|mut chunk| chunk.copy_to_bytes(chunk.remaining())))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A JSON body of at most `limit` bytes.
pub async fn json(headers: &HeaderMap, body: BodyStream, limit: u64) -> Result<Bytes, ApiError> {
    if let Some(ct) = headers.get("content-type") {
        let json = ct
            .to_str()
            .is_ok_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    form(headers, body, limit).await
}

/// A body of any content type (a Twilio form) of at most `limit` bytes.
pub async fn form(headers: &HeaderMap, body: BodyStream, limit: u64) -> Result<Bytes, ApiError> {
    if content_length(headers).is_some_and(|l| l > limit) {
        return Err(ApiError::PayloadTooLarge);
    }
    read_bounded(body, limit).await
}

async fn read_bounded(mut body: BodyStream, limit: u64) -> Result<Bytes, ApiError> {
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| ApiError::BadRequest {
            code: "invalid_body",
            message: "the request body could not be read".into(),
            field: None,
        })?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::PayloadTooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}
