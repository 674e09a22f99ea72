//! `stateset-voice sim realtime`: the simulator on its own, logging each session as it
//! ends, until shutdown.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use super::{RealtimeScript, RealtimeSim, RealtimeSimConfig, SessionSnapshot};

/// One line about a finished session.
pub fn summary(session: &SessionSnapshot) -> String {
    format!(
        "session {} ({}) ended {:?}: {} client events, {} ms of caller audio, {} user turns, responses {} started / {} completed / {} cancelled, {} truncations, {} errors",
        session.id,
        session.model,
        session.ended,
        session.client_event_count,
        session.audio_bytes_received / 8,
        session.user_turns.len(),
        session.responses_started,
        session.responses_completed,
        session.responses_cancelled,
        session.truncations.len(),
        session.errors.len(),
    )
}

/// Runs a simulator on `bind` accepting `api_keys` (with the script in `script`, JSON)
/// until `shutdown` resolves.
pub async fn run_standalone(
    bind: SocketAddr,
    api_keys: Vec<String>,
    script: Option<&Path>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let script = match script {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the script {}", path.display()))?;
            RealtimeScript::from_json(&text)
                .with_context(|| format!("invalid script {}", path.display()))?
        }
        None => RealtimeScript::default(),
    };
    let config = RealtimeSimConfig {
        bind,
        api_keys,
        script,
        ..RealtimeSimConfig::default()
    };
    let sim = RealtimeSim::start(config).await?;
    println!("realtime simulator listening on {}", sim.url());
    println!("use it as the OpenAI Realtime URL (in place of wss://api.openai.com/v1/realtime)");
    println!(
        "LLM judge (chat completions) at {} (JUDGE_BASE_URL)",
        sim.judge_base_url()
    );
    let mut sessions = sim.shared.subscribe();
    let watcher = tokio::spawn(async move {
        let mut logged = HashSet::new();
        // At most four looks a second: snapshots change with every delta under load.
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            match sessions.has_changed() {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => break,
            }
            let ended: Vec<String> = sessions
                .borrow_and_update()
                .iter()
                .filter(|s| s.ended.is_some())
                .filter(|s| logged.insert(s.index))
                .map(summary)
                .collect();
            for line in ended {
                println!("{line}");
            }
        }
    });
    shutdown.await;
    watcher.abort();
    let _ = watcher.await;
    sim.shutdown();
    Ok(())
}
