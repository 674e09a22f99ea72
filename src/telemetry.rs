//! Logging (tracing, text or JSON) and metrics (Prometheus recorder).
//!
//! The Prometheus recorder is process-global and installed once; every application in the
//! process (tests start many) renders the same registry. Metric labels are bounded: actor
//! kind, route template, status, never a per-call id.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets (seconds) for every `*_seconds` histogram.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets when nothing scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Installs the global Prometheus recorder (once) and returns its handle.
///
/// Histogram samples are kept by the recorder until they are folded into their buckets,
/// which a scrape does; a thread does it every [`UPKEEP_INTERVAL`] too, so memory stays flat
/// however long calls last and whether or not anything scrapes `/metrics`.
pub fn metrics_handle() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            spawn_upkeep(handle.clone());
            actors::meter::describe();
            actors::notifier::describe();
            actors::evaluation::describe();
            describe_http();
            handle
        })
        .clone()
}

/// Folds histogram samples into their buckets every [`UPKEEP_INTERVAL`], for the life of the
/// process (a thread: the recorder is process-global and may outlive any runtime).
fn spawn_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name(String::from("metrics-upkeep"))
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = started {
        tracing::warn!(error = %error, "metrics upkeep thread did not start: histograms drain only when scraped");
    }
}

fn describe_http() {
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests, by route template, method and status"
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency, by route template and method"
    );
    metrics::describe_counter!(
        "rate_limited_total",
        "Requests refused by a rate limit, by limit kind"
    );
}

/// Installs the tracing subscriber writing to standard output.
pub fn init_logging(format: LogFormat, filter: &str) {
    init_logging_with(format, filter, std::io::stdout);
}

/// Installs the tracing subscriber with any writer (tests capture logs this way).
/// A second call in the same process is ignored.
pub fn init_logging_with<W>(format: LogFormat, filter: &str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    let _ = result;
}

/// A log sink that keeps everything written to it (and optionally echoes it), so tests can
/// assert that no secret ever reaches a log line.
#[derive(Clone, Default)]
pub struct CapturedLogs {
    buf: Arc<Mutex<Vec<u8>>>,
    echo: bool,
}

impl CapturedLogs {
    /// A sink; `echo` also copies lines to standard output.
    pub fn new(echo: bool) -> Self {
        Self {
            buf: Arc::default(),
            echo,
        }
    }

    /// Everything logged so far.
    pub fn contents(&self) -> String {
        let buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Writer handed out by [`CapturedLogs`].
pub struct CapturedWriter {
    sink: CapturedLogs,
}

impl std::io::Write for CapturedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.sink.echo {
            std::io::stdout().write_all(data)?;
        }
        self.sink
            .buf
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        CapturedWriter { sink: self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample count of `name` in `rendered`.
    fn count(rendered: &str, name: &str) -> Option<u64> {
        let prefix = format!("{name}_count ");
        rendered
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|n| n.trim().parse().ok())
    }

    #[test]
    fn upkeep_folds_samples_into_buckets_that_later_scrapes_render() {
        let handle = metrics_handle();
        let histogram = metrics::histogram!("telemetry_upkeep_test_seconds");
        for n in 0..10_000 {
            histogram.record(f64::from(n % 100) / 10_000.0);
        }
        // 0.0000 to 0.0099 s, a hundred times each: 51 of every 100 are within 5 ms.
        // What the upkeep thread does: the samples leave the recorder's sample buffer for
        // the buckets, so nothing accumulates between scrapes.
        handle.run_upkeep();
        let first = handle.render();
        assert_eq!(count(&first, "telemetry_upkeep_test_seconds"), Some(10_000));
        assert!(
            first.contains(r#"telemetry_upkeep_test_seconds_bucket{le="0.005"} 5100"#),
            "{first}"
        );
        handle.run_upkeep();
        histogram.record(0.0001);
        handle.run_upkeep();
        assert_eq!(
            count(&handle.render(), "telemetry_upkeep_test_seconds"),
            Some(10_001)
        );
    }
}
