//! The simulator's judge driven by the runtime's own judge client
//! (`actors::evaluation::judge`) over loopback: keyword verdicts, configured verdicts, the
//! bearer key, each fault, and the websocket still served on the same port.

use std::time::Duration;

use actors::evaluation::input::{EvaluationInput, HandoffEvent, Speaker, ToolInvocation, Turn};
use actors::evaluation::judge::{Answer, Judge, JudgeError, JudgeInput, JudgeSettings};
use actors::evaluation::rubric::JudgePass;
use actors::realtime::{RealtimeClient, RealtimeEndpoint, ServerEvent};
use actors::store::FunctionCallStatus;
use serde_json::{Value, json};

use super::*;

const KEY: &str = "sk-sim-judge";
const LIMIT: Duration = Duration::from_secs(10);

fn turn(speaker: Speaker, text: &str, end_ms: i64) -> Turn {
    Turn {
        speaker,
        text: text.into(),
        heard_text: None,
        interrupted: false,
        start_ms: None,
        end_ms: Some(end_ms),
        response_gap_ms: None,
    }
}

fn conversation() -> EvaluationInput {
    EvaluationInput {
        turns: vec![
            turn(
                Speaker::Agent,
                "Hello, thanks for calling Acme. How can I help?",
                1_000,
            ),
            turn(
                Speaker::Caller,
                "Where is my order A1? Card 4111 1111 1111 1111.",
                3_000,
            ),
            turn(Speaker::Agent, "Your order shipped yesterday.", 6_000),
        ],
        tool_calls: vec![ToolInvocation {
            name: "lookup_order".into(),
            arguments: json!({"order_id": "A1"}),
            status: FunctionCallStatus::Succeeded,
            result: Some(json!({"status": "shipped"})),
            error: None,
            started_ms: 3_500,
            finished_ms: Some(3_600),
        }],
        handoffs: Vec::<HandoffEvent>::new(),
        ..EvaluationInput::default()
    }
}

const QUESTIONS: [(&str, &str, JudgePass); 2] = [
    (
        "resolved",
        "Did the agent resolve the caller's question or hand off correctly?",
        JudgePass::Yes,
    ),
    ("tone", "How polite was the agent?", JudgePass::MinScore(4)),
];

fn client(sim: &RealtimeSimHandle, timeout: Duration) -> Judge {
    Judge::new(JudgeSettings {
        base_url: sim.judge_base_url(),
        model: "gpt-judge-sim".into(),
        timeout,
        max_transcript_chars: 10_000,
        api_key: Some(KEY.into()),
        summaries: true,
    })
    .expect("client")
}

async fn start() -> RealtimeSimHandle {
    RealtimeSim::start(RealtimeSimConfig::with_api_key(KEY))
        .await
        .expect("simulator")
}

#[tokio::test]
async fn the_simulator_judges_by_keywords_in_the_real_api_shape() {
    let sim = start().await;
    let judge = client(&sim, LIMIT);
    let input = JudgeInput::build(&conversation(), &QUESTIONS, 10_000);
    let call = judge.ask(KEY, &input).await.expect("answer");
    assert_eq!(call.model, "gpt-judge-sim");
    assert!(call.input_tokens > 0 && call.output_tokens > 0);
    let verdicts: Vec<(String, Answer, u8)> = call
        .output
        .judgments
        .iter()
        .map(|j| (j.key.clone(), j.verdict, j.score))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("resolved".into(), Answer::Yes, 5),
            ("tone".into(), Answer::Yes, 5)
        ]
    );
    assert_eq!(call.output.judgments[0].evidence_turns, vec![2]);
    assert_eq!(
        call.output.summary,
        "Agent: Hello, thanks for calling Acme. Caller: Where is my order A1?"
    );
    assert_eq!(call.output.tags, vec!["order"]);
    let requests = sim.judge_requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].authorized);
    assert_eq!(requests[0].criteria, vec!["resolved", "tone"]);
    assert_eq!(requests[0].status, 200);
    assert!(
        !requests[0].body.contains("4111 1111"),
        "the judge never sees the card number"
    );
    let body: Value = serde_json::from_str(&requests[0].body).expect("json");
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);

    // A configured verdict wins over the keywords.
    sim.set_judge_verdict("resolved", SimVerdict::no());
    let call = judge.ask(KEY, &input).await.expect("answer");
    assert_eq!(call.output.judgments[0].verdict, Answer::No);
    assert_eq!(call.output.judgments[0].score, 1);

    // The key is checked like the websocket's.
    let err = judge.ask("sk-wrong", &input).await.expect_err("401");
    assert!(
        matches!(err, JudgeError::Status { status: 401, .. }),
        "{err}"
    );
    assert!(!sim.judge_requests()[2].authorized);
}

#[tokio::test]
async fn judge_faults_are_served_as_configured() {
    let sim = start().await;
    let judge = client(&sim, Duration::from_millis(300));
    let input = JudgeInput::build(&conversation(), &QUESTIONS, 10_000);

    sim.judge_fault_next(JudgeFault::Status(503));
    let err = judge.ask(KEY, &input).await.expect_err("503");
    assert!(
        matches!(err, JudgeError::Status { status: 503, .. }),
        "{err}"
    );
    judge
        .ask(KEY, &input)
        .await
        .expect("a one-shot fault is used once");

    sim.set_judge_fault(Some(JudgeFault::InvalidJson));
    for _ in 0..2 {
        let err = judge.ask(KEY, &input).await.expect_err("invalid");
        assert_eq!(err.label(), "invalid", "{err}");
    }
    sim.set_judge_fault(Some(JudgeFault::Delay(Duration::from_secs(5))));
    assert_eq!(
        judge.ask(KEY, &input).await.expect_err("slow"),
        JudgeError::Timeout(300)
    );
    sim.set_judge_fault(Some(JudgeFault::Hang));
    assert_eq!(
        judge.ask(KEY, &input).await.expect_err("silent"),
        JudgeError::Timeout(300)
    );
    tokio::time::timeout(LIMIT, sim.wait_for_judge_requests(6))
        .await
        .expect("six requests");
    assert_eq!(sim.judge_requests()[5].status, 0, "never answered");
    sim.set_judge_fault(None);
    judge.ask(KEY, &input).await.expect("answers again");

    // Not the judge's path, or not an evaluation request.
    let http = reqwest::Client::new();
    let missing = http
        .get(format!("http://{}/v1/models", sim.addr()))
        .send()
        .await
        .expect("answer");
    assert_eq!(missing.status(), 404);
    let foreign = http
        .post(format!("{}/chat/completions", sim.judge_base_url()))
        .bearer_auth(KEY)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(foreign.status(), 400);

    // The websocket is still served on the same port.
    let endpoint = RealtimeEndpoint {
        url: sim.url(),
        api_key: KEY.into(),
        model: "gpt-realtime".into(),
    };
    let (_tx, mut rx) = tokio::time::timeout(LIMIT, RealtimeClient::connect(endpoint))
        .await
        .expect("in time")
        .expect("connected");
    let first = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .expect("in time");
    assert!(
        matches!(first, Some(Ok(ServerEvent::SessionCreated(_)))),
        "{first:?}"
    );
}
