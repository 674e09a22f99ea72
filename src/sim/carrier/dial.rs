//! `<Dial>`: the simulated operators rung in parallel and the result the `action` URL gets
//! (`DialCallStatus`, `DialCallSid`, `DialCallDuration`, `DialBridged`).
//!
//! The plan is computed up front from each number's [`OperatorBehaviour`]: the first leg to
//! answer within the timeout wins and talks; otherwise the dial ends when the last leg does,
//! `no-answer` if any leg rang out, else `busy` if any was busy, else `failed`.

use std::time::Duration;

use super::config::OperatorBehaviour;
use super::state::DialOutcome;
use super::webhook::round_secs;

/// How long the `<Dial>` lasts and how it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DialPlan {
    /// Time from the start of the dial to its end.
    pub wait: Duration,
    /// The result.
    pub outcome: DialOutcome,
}

/// Plans a dial of `legs` (`(number, behaviour)`), each with a new leg SID from `new_sid`.
pub(crate) fn plan(
    legs: &[(String, OperatorBehaviour)],
    timeout: Duration,
    ring_time: Duration,
    mut new_sid: impl FnMut() -> String,
) -> DialPlan {
    let mut winner: Option<(Duration, Duration, String, String)> = None;
    let mut end = Duration::ZERO;
    let (mut any_no_answer, mut any_busy) = (false, false);
    let mut last_sid = None;
    for (number, behaviour) in legs {
        let sid = new_sid();
        match *behaviour {
            OperatorBehaviour::Answer { answer_after, talk } if answer_after < timeout => {
                if winner.as_ref().is_none_or(|(at, ..)| answer_after < *at) {
                    winner = Some((answer_after, talk, sid.clone(), number.clone()));
                }
            }
            OperatorBehaviour::Answer { .. } | OperatorBehaviour::NoAnswer => {
                any_no_answer = true;
                end = end.max(timeout);
            }
            OperatorBehaviour::Busy => {
                any_busy = true;
                end = end.max(ring_time.min(timeout));
            }
            OperatorBehaviour::Failed => {}
        }
        last_sid = Some(sid);
    }
    if let Some((at, talk, sid, number)) = winner {
        return DialPlan {
            wait: at + talk,
            outcome: DialOutcome {
                status: "completed".into(),
                dial_call_sid: sid,
                duration_secs: round_secs(talk),
                bridged: true,
                answered_number: Some(number),
            },
        };
    }
    let status = if any_no_answer {
        "no-answer"
    } else if any_busy {
        "busy"
    } else {
        "failed"
    };
    DialPlan {
        wait: end,
        outcome: DialOutcome {
            status: status.into(),
            dial_call_sid: last_sid.unwrap_or_else(new_sid),
            duration_secs: 0,
            bridged: false,
            answered_number: None,
        },
    }
}

/// The `<Dial action>` parameters for `outcome` (added to the standard voice parameters).
pub(crate) fn action_params(outcome: &DialOutcome) -> Vec<(String, String)> {
    vec![
        ("DialCallStatus".into(), outcome.status.clone()),
        ("DialCallSid".into(), outcome.dial_call_sid.clone()),
        ("DialCallDuration".into(), outcome.duration_secs.to_string()),
        ("DialBridged".into(), outcome.bridged.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("CA{n}")
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn first_answer_wins() {
        let legs = vec![
            ("+1555".to_owned(), OperatorBehaviour::Busy),
            (
                "+1666".to_owned(),
                OperatorBehaviour::Answer {
                    answer_after: MS(300),
                    talk: MS(1600),
                },
            ),
            (
                "+1777".to_owned(),
                OperatorBehaviour::Answer {
                    answer_after: MS(100),
                    talk: MS(2400),
                },
            ),
        ];
        let plan = plan(&legs, MS(30_000), MS(100), sids());
        assert_eq!(plan.wait, MS(2500));
        assert_eq!(plan.outcome.status, "completed");
        assert_eq!(plan.outcome.dial_call_sid, "CA3");
        assert_eq!(plan.outcome.duration_secs, 2);
        assert!(plan.outcome.bridged);
        assert_eq!(plan.outcome.answered_number.as_deref(), Some("+1777"));
    }

    #[test]
    fn unanswered_dials_report_the_worst_leg() {
        let busy = vec![("+1555".to_owned(), OperatorBehaviour::Busy)];
        let p = plan(&busy, MS(30_000), MS(100), sids());
        assert_eq!((p.wait, p.outcome.status.as_str()), (MS(100), "busy"));
        assert!(!p.outcome.bridged);
        let slow = vec![
            ("+1555".to_owned(), OperatorBehaviour::Busy),
            (
                "+1666".to_owned(),
                OperatorBehaviour::Answer {
                    answer_after: MS(5000),
                    talk: MS(1),
                },
            ),
        ];
        let p = plan(&slow, MS(1000), MS(100), sids());
        assert_eq!((p.wait, p.outcome.status.as_str()), (MS(1000), "no-answer"));
        let failed = vec![("+1555".to_owned(), OperatorBehaviour::Failed)];
        let p = plan(&failed, MS(1000), MS(100), sids());
        assert_eq!((p.wait, p.outcome.status.as_str()), (MS(0), "failed"));
        let p = plan(&[], MS(1000), MS(100), sids());
        assert_eq!(p.outcome.status, "failed");
        assert_eq!(p.outcome.dial_call_sid, "CA1");
        let params = action_params(&p.outcome);
        assert_eq!(params[0], ("DialCallStatus".into(), "failed".into()));
        assert_eq!(params[3], ("DialBridged".into(), "false".into()));
    }
}
