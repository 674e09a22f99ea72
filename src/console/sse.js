// Server-Sent Events over fetch: EventSource cannot send the authorization header, so the
// stream is read with fetch and a ReadableStream and parsed here. After a drop the stream
// is opened again with `Last-Event-ID` (the last id received), with exponential backoff.

import { ApiError, errorOf } from "./api.js";

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 15000;

/**
 * Reads one event stream until `signal` aborts or `onEvent` returns "stop".
 * Callbacks: onOpen(), onEvent(type, data, id) (data parsed as JSON when it is JSON),
 * onError(ApiError, willRetry). An answer 4xx other than 408/429 is final (no retry).
 */
export async function readStream(url, headers, { signal, onOpen, onEvent, onError }) {
  let lastId = null;
  let backoff = MIN_BACKOFF_MS;
  while (!signal.aborted) {
    const h = { accept: "text/event-stream", ...headers };
    if (lastId !== null) h["last-event-id"] = lastId;
    let stop = false;
    try {
      const response = await fetch(url, { headers: h, signal, cache: "no-store" });
      if (!response.ok) {
        const error = await errorOf(response);
        const final = response.status >= 400 && response.status < 500
          && response.status !== 408 && response.status !== 429;
        if (onError) onError(error, !final);
        if (final) return;
      } else {
        backoff = MIN_BACKOFF_MS;
        if (onOpen) onOpen();
        stop = await consume(response.body, signal, (type, data, id) => {
          if (id !== null) lastId = id;
          return onEvent(type, data, id);
        });
        if (stop) return;
        if (onError && !signal.aborted) {
          onError(new ApiError(0, "stream_closed", "the stream closed; reconnecting"), true);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (onError) onError(new ApiError(0, "network", e && e.message ? e.message : String(e)), true);
    }
    await pause(backoff, signal);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  }
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** Parses the body; resolves true when `dispatch` asked to stop. */
async function consume(body, signal, dispatch) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let type = "";
  let data = [];
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        const width = buffer.startsWith("\r\n", newline) ? 2 : 1;
        // A lone "\r" at the end may be the first half of "\r\n": wait for more.
        if (width === 1 && buffer[newline] === "\r" && newline === buffer.length - 1) break;
        buffer = buffer.slice(newline + width);
        if (line === "") {
          if (data.length > 0) {
            const text = data.join("\n");
            let parsed = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              // Plain text data: handed over as is.
            }
            if (dispatch(type || "message", parsed, id) === "stop") return true;
          }
          type = "";
          data = [];
          id = null;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") type = value;
        else if (field === "data") data.push(value);
        else if (field === "id" && !value.includes("\0")) id = value;
      }
    }
  } finally {
    if (!signal.aborted) reader.cancel().catch(() => {});
  }
}
