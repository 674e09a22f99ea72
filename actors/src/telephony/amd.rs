//! Answering-machine actions on outbound calls: what a `make-call` asks for
//! ([`AmdRequest`]: an [`AmdAction`], the carrier's detection mode and timeout), the plain
//! decision taken when the asynchronous AMD result arrives ([`decide`]), what became of the
//! call ([`MachineOutcome`], shown on the call log and in `voice.call.completed`), and who
//! answered a completed call ([`callee_of`]: `machine | human | none`, for retry policies).
//!
//! The result (`AnsweredBy`) is posted to `amd-status` while the media stream may already
//! run, on whichever node the carrier reaches; the actions go through the carrier's REST API
//! ([`super::control`]), so they work from any node: `hangup` ends the call at once,
//! `voicemail` redirects it to `<Say>{the version's voicemail message}</Say><Hangup/>` once
//! the greeting's end is detected (the carrier plays it after the beep). The stream the
//! redirect replaces ends the AI leg; the end reason `answering_machine` is recorded first.

/// What to do when a machine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmdAction {
    /// Wait for the end of the greeting (`DetectMessageEnd`), leave the agent version's
    /// voicemail message, hang up.
    Voicemail,
    /// Hang up as soon as a machine is detected (`Enable`).
    Hangup,
    /// Record the result and let the conversation go on (`Enable`, or the mode asked).
    Continue,
}

impl AmdAction {
    /// Every action.
    pub const ALL: [AmdAction; 3] = [AmdAction::Voicemail, AmdAction::Hangup, AmdAction::Continue];

    /// The API and stored form.
    pub const fn as_str(self) -> &'static str {
        match self {
            AmdAction::Voicemail => "voicemail",
            AmdAction::Hangup => "hangup",
            AmdAction::Continue => "continue",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        AmdAction::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The detection mode this action needs: the message end only to leave a message.
    pub const fn mode(self) -> AmdMode {
        match self {
            AmdAction::Voicemail => AmdMode::DetectMessageEnd,
            AmdAction::Hangup | AmdAction::Continue => AmdMode::Enable,
        }
    }
}

/// The carrier's detection mode (`MachineDetection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmdMode {
    /// The result as soon as the callee type is known (`machine_start`).
    Enable,
    /// Wait for the end of a machine's greeting (`machine_end_beep|silence|other`).
    DetectMessageEnd,
}

impl AmdMode {
    /// The carrier's (and the stored) form.
    pub const fn as_str(self) -> &'static str {
        match self {
            AmdMode::Enable => "Enable",
            AmdMode::DetectMessageEnd => "DetectMessageEnd",
        }
    }
}

/// Answering-machine detection asked for an outbound call (`OutboundRequest.machine_detection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdRequest {
    /// What to do on a machine.
    pub action: AmdAction,
    /// The carrier's mode (normally [`AmdAction::mode`]; the legacy string forms of the API
    /// ask `continue` with either mode).
    pub mode: AmdMode,
    /// `MachineDetectionTimeout` (3–60 s; the carrier's default, 30 s, when `None`).
    pub timeout_secs: Option<u32>,
}

impl AmdRequest {
    /// The shortest and longest detection timeout the carrier accepts.
    pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 3..=60;

    /// `action` with the mode it needs.
    pub const fn new(action: AmdAction, timeout_secs: Option<u32>) -> Self {
        Self {
            action,
            mode: action.mode(),
            timeout_secs,
        }
    }
}

/// Who the carrier says answered (`AnsweredBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnsweredBy {
    /// `human`.
    Human,
    /// `unknown` (or a value we do not know).
    Unknown,
    /// `machine_start`: a machine, its greeting still playing.
    MachineStart,
    /// `machine_end_beep`, `machine_end_silence`, `machine_end_other`: the greeting ended.
    MachineEnd,
    /// `fax`.
    Fax,
}

impl AnsweredBy {
    /// Parses the carrier's value (anything unknown is [`AnsweredBy::Unknown`]).
    pub fn parse(s: &str) -> Self {
        match s {
            "human" => AnsweredBy::Human,
            "machine_start" => AnsweredBy::MachineStart,
            "machine_end_beep" | "machine_end_silence" | "machine_end_other" => {
                AnsweredBy::MachineEnd
            }
            "fax" => AnsweredBy::Fax,
            _ => AnsweredBy::Unknown,
        }
    }

    /// A machine (or a fax) answered.
    pub const fn is_machine(self) -> bool {
        matches!(
            self,
            AnsweredBy::MachineStart | AnsweredBy::MachineEnd | AnsweredBy::Fax
        )
    }
}

/// What the AMD result makes the runtime do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A human (or unknown): the conversation goes on.
    Converse,
    /// A machine and `continue`: recorded, the conversation goes on.
    Ignore,
    /// Hang up now.
    HangUp,
    /// The greeting ended: leave the voicemail message and hang up.
    LeaveVoicemail,
    /// A machine whose greeting still plays (`voicemail`): wait for the message end.
    AwaitMessageEnd,
}

/// The decision for `action` when the carrier reports `answered_by`. A fax cannot take a
/// message: `voicemail` hangs up on it.
pub const fn decide(action: AmdAction, answered_by: AnsweredBy) -> Decision {
    match (action, answered_by) {
        (_, AnsweredBy::Human | AnsweredBy::Unknown) => Decision::Converse,
        (AmdAction::Continue, _) => Decision::Ignore,
        (AmdAction::Hangup, _) | (AmdAction::Voicemail, AnsweredBy::Fax) => Decision::HangUp,
        (AmdAction::Voicemail, AnsweredBy::MachineEnd) => Decision::LeaveVoicemail,
        (AmdAction::Voicemail, AnsweredBy::MachineStart) => Decision::AwaitMessageEnd,
    }
}

/// What became of a call with an AMD action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineOutcome {
    /// The conversation went on: a human (or unknown) answered, or a machine with
    /// `continue` (its `answered_by` tells which).
    Conversation,
    /// The voicemail message was left after the beep.
    VoicemailLeft,
    /// The call was hung up on a machine.
    HungUpOnMachine,
    /// No AMD result arrived before the call completed.
    NoResult,
}

impl MachineOutcome {
    /// Every outcome.
    pub const ALL: [MachineOutcome; 4] = [
        MachineOutcome::Conversation,
        MachineOutcome::VoicemailLeft,
        MachineOutcome::HungUpOnMachine,
        MachineOutcome::NoResult,
    ];

    /// The API and stored form.
    pub const fn as_str(self) -> &'static str {
        match self {
            MachineOutcome::Conversation => "conversation",
            MachineOutcome::VoicemailLeft => "voicemail_left",
            MachineOutcome::HungUpOnMachine => "hung_up_on_machine",
            MachineOutcome::NoResult => "no_result",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        MachineOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The outcome a decision records (none while the message end is awaited).
    pub const fn of(decision: Decision) -> Option<Self> {
        match decision {
            Decision::Converse | Decision::Ignore => Some(MachineOutcome::Conversation),
            Decision::HangUp => Some(MachineOutcome::HungUpOnMachine),
            Decision::LeaveVoicemail => Some(MachineOutcome::VoicemailLeft),
            Decision::AwaitMessageEnd => None,
        }
    }
}

/// The machine outcome of a call as shown: the recorded one; `no_result` for a call with an
/// action that completed without one; `None` without an action (or still running).
pub fn machine_outcome(call: &crate::store::CallRecord) -> Option<MachineOutcome> {
    call.amd_action.as_ref()?;
    match call
        .machine_outcome
        .as_deref()
        .and_then(MachineOutcome::parse)
    {
        Some(o) => Some(o),
        None if call.completed_at.is_some() => Some(MachineOutcome::NoResult),
        None => None,
    }
}

/// Who answered a call, for retry policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callee {
    /// An answering machine (or a fax).
    Machine,
    /// A person.
    Human,
    /// Not known (no detection, no result, or `unknown`).
    None,
}

/// Who answered `call`, from its AMD result.
pub fn callee_of(call: &crate::store::CallRecord) -> Callee {
    match call.answered_by.as_deref().map(AnsweredBy::parse) {
        Some(a) if a.is_machine() => Callee::Machine,
        Some(AnsweredBy::Human) => Callee::Human,
        _ => Callee::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_by_action_and_result() {
        use AmdAction::{Continue, Hangup, Voicemail};
        use Decision::*;
        let results = [
            ("human", [Converse, Converse, Converse]),
            ("unknown", [Converse, Converse, Converse]),
            ("something_new", [Converse, Converse, Converse]),
            ("machine_start", [AwaitMessageEnd, HangUp, Ignore]),
            ("machine_end_beep", [LeaveVoicemail, HangUp, Ignore]),
            ("machine_end_silence", [LeaveVoicemail, HangUp, Ignore]),
            ("machine_end_other", [LeaveVoicemail, HangUp, Ignore]),
            ("fax", [HangUp, HangUp, Ignore]),
        ];
        for (answered_by, expected) in results {
            for (action, want) in [Voicemail, Hangup, Continue].into_iter().zip(expected) {
                assert_eq!(
                    decide(action, AnsweredBy::parse(answered_by)),
                    want,
                    "{answered_by} with {}",
                    action.as_str()
                );
            }
        }
    }

    #[test]
    fn modes_and_stored_forms() {
        assert_eq!(AmdAction::Voicemail.mode(), AmdMode::DetectMessageEnd);
        assert_eq!(AmdAction::Hangup.mode(), AmdMode::Enable);
        assert_eq!(AmdAction::Continue.mode(), AmdMode::Enable);
        for a in AmdAction::ALL {
            assert_eq!(AmdAction::parse(a.as_str()), Some(a));
        }
        for o in MachineOutcome::ALL {
            assert_eq!(MachineOutcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(MachineOutcome::of(Decision::AwaitMessageEnd), None);
        assert_eq!(
            MachineOutcome::of(Decision::LeaveVoicemail),
            Some(MachineOutcome::VoicemailLeft)
        );
    }

    #[test]
    fn callee_and_shown_outcome_of_a_call() {
        let mut call = crate::store::fixtures::call(&crate::ids::TenantId::generate());
        assert_eq!(callee_of(&call), Callee::None);
        assert_eq!(machine_outcome(&call), None);
        call.answered_by = Some("machine_end_beep".into());
        assert_eq!(callee_of(&call), Callee::Machine);
        call.answered_by = Some("fax".into());
        assert_eq!(callee_of(&call), Callee::Machine);
        call.answered_by = Some("human".into());
        assert_eq!(callee_of(&call), Callee::Human);
        call.answered_by = Some("unknown".into());
        assert_eq!(callee_of(&call), Callee::None);
        call.amd_action = Some("voicemail".into());
        assert_eq!(machine_outcome(&call), None);
        call.completed_at = Some(1);
        assert_eq!(machine_outcome(&call), Some(MachineOutcome::NoResult));
        call.machine_outcome = Some("voicemail_left".into());
        assert_eq!(machine_outcome(&call), Some(MachineOutcome::VoicemailLeft));
    }
}
