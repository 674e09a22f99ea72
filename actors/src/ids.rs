//! Typed identifiers. Every id is a prefixed random string (`ten_…`, `key_…`, `call_…`,
//! `oq_…`, `cbt_…`, `evl_…`, `cmp_…`) so that a value in a log line or a URL says what it names, and so that
//! one kind of id can never be passed where another is expected.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new random id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::new_v4().simple()))
            }

            /// Accepts a string as this kind of id when it has the right prefix and shape.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                let ok = !rest.is_empty()
                    && rest.len() <= 64
                    && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                ok.then(|| Self(s.to_owned()))
            }

            /// Wraps a value read back from the store (trusted to be well-formed).
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A tenant (a business using the platform).
    TenantId,
    "ten_"
);
id_type!(
    /// A tenant API key (the record, not the secret).
    ApiKeyId,
    "key_"
);
id_type!(
    /// A phone route (number → tenant, agent, fallback).
    RouteId,
    "rte_"
);
id_type!(
    /// An agent (a tenant's named phone persona).
    AgentId,
    "agt_"
);
id_type!(
    /// A version of an agent (immutable once approved).
    AgentVersionId,
    "agv_"
);
id_type!(
    /// A voice session (one AI conversation on a call).
    SessionId,
    "vs_"
);
id_type!(
    /// A call in the call log (ours, distinct from Twilio's `CallSid`).
    CallId,
    "call_"
);
id_type!(
    /// A tenant event (the envelope sent to the tenant's event webhook).
    EventId,
    "evt_"
);
id_type!(
    /// The delivery of one event to one tenant endpoint (with its attempts).
    DeliveryId,
    "whd_"
);
id_type!(
    /// An operator queue (the humans a call can be handed to).
    QueueId,
    "oq_"
);
id_type!(
    /// A callback task (a caller a human should call back).
    CallbackTaskId,
    "cbt_"
);

id_type!(
    /// A handoff of a call to a human queue.
    HandoffId,
    "ho_"
);
id_type!(
    /// An evaluation job: one voice session to score against one rubric.
    EvaluationJobId,
    "evj_"
);
id_type!(
    /// An evaluation: the scored result of an evaluation job.
    EvaluationId,
    "evl_"
);
id_type!(
    /// An operator's review of an evaluation.
    ReviewId,
    "evr_"
);
id_type!(
    /// A decision taken on a rollout (start, advance, pause, rollback, promote, automatic).
    RolloutDecisionId,
    "rod_"
);

// --- recording (issue 16, part 1) ---
id_type!(
    /// A call recording made at the carrier (its metadata; the audio stays at the carrier).
    RecordingId,
    "rec_"
);

id_type!(
    /// An outbound campaign.
    CampaignId,
    "cmp_"
);

id_type!(
    /// A contact of an outbound campaign.
    CampaignContactId,
    "cct_"
);

id_type!(
    /// One attempt to call a campaign's contact.
    CampaignAttemptId,
    "cat_"
);

id_type!(
    /// A named admin identity (an admin key with roles; the key itself is never stored).
    AdminIdentityId,
    "adm_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_reject_other_kinds() {
        let t = TenantId::generate();
        assert!(t.as_str().starts_with("ten_"));
        assert_eq!(TenantId::parse(t.as_str()), Some(t.clone()));
        assert_eq!(ApiKeyId::parse(t.as_str()), None);
        assert_eq!(TenantId::parse("ten_"), None);
        assert_eq!(TenantId::parse("ten_a/b"), None);
        assert_eq!(TenantId::parse(&format!("ten_{}", "a".repeat(65))), None);
    }
}
