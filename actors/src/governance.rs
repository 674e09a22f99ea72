//! Governance (DESIGN §6): who may change what, what may go live, and what may be dialed
//! (canary rollouts and their guardrails are the rollout actor's, `crate::rollout`).
//!
//! - [`identities`]: named admin identities (admin keys with [`AdminRole`]s), created, listed
//!   and revoked by an admin, each change audited; the bootstrap `ADMIN_API_KEY` is the
//!   identity [`ROOT`], which holds every role.
//! - [`approval`]: who may approve an agent version (the tenant's two-person rule).
//! - [`settings`]: a tenant's governance settings.
//! - [`launch`]: a tenant's launch record and the approvals given, invalidated by a material
//!   change.
//! - [`dnc`]: the per-tenant do-not-call list (API, bulk import, the `opt_out` built-in).
//! - [`predial`]: the pre-dial policy every outbound call passes before anything is dialed
//!   (do-not-call, calling windows in the callee's zone, a daily attempt limit), each
//!   decision recorded with its rule.
//! - [`readiness`]: the readiness review, every launch gate with its status, reason, owner
//!   and evidence; what a route's `staged → live` is gated on.
//!
//! These are plain modules over the [`Store`](crate::store::Store): every change and its
//! audit row are one transaction, and no state lives outside the database, so no actor
//! stands in front of them.

use crate::store::StoreError;

pub mod approval;
pub mod dnc;
pub mod identities;
pub mod launch;
pub mod predial;
pub mod readiness;
pub mod settings;

/// The identity of the bootstrap admin key (`ADMIN_API_KEY`); it holds every role.
pub const ROOT: &str = "root";

/// What an admin identity may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdminRole {
    /// Every admin change.
    Admin,
    /// Approves agent versions (and, later, launches).
    Approver,
    /// Reads every admin resource, changes nothing.
    Auditor,
}

impl AdminRole {
    /// Every role, in canonical order.
    pub const ALL: [AdminRole; 3] = [AdminRole::Admin, AdminRole::Approver, AdminRole::Auditor];

    /// The stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            AdminRole::Admin => "admin",
            AdminRole::Approver => "approver",
            AdminRole::Auditor => "auditor",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Joins roles for storage (`admin,auditor`).
    pub fn join(roles: &[AdminRole]) -> String {
        roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Splits the stored form (`None` when a part is not a role).
    pub fn split(stored: &str) -> Option<Vec<AdminRole>> {
        stored
            .split(',')
            .filter(|s| !s.is_empty())
            .map(AdminRole::parse)
            .collect()
    }

    /// `admin`, `approver or auditor`: roles as a sentence names them.
    pub fn describe(roles: &[AdminRole]) -> String {
        let names: Vec<String> = roles.iter().map(|r| format!("`{}`", r.as_str())).collect();
        if names.is_empty() {
            String::from("no role")
        } else {
            names.join(" or ")
        }
    }
}

/// Errors of the governance operations.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    /// Not found (what).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Invalid input: the field at fault and why (nothing was written).
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
    /// A uniqueness or state conflict.
    #[error("{0}")]
    Conflict(String),
    /// The identity may not do this: a machine-readable code and why.
    #[error("{message}")]
    Forbidden {
        /// Machine-readable code (`two_person_approval`).
        code: &'static str,
        /// Why.
        message: String,
    },
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
}

impl GovernanceError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        GovernanceError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_stored_form() {
        let roles = [AdminRole::Approver, AdminRole::Auditor];
        assert_eq!(AdminRole::join(&roles), "approver,auditor");
        assert_eq!(AdminRole::split("approver,auditor"), Some(roles.to_vec()));
        assert_eq!(AdminRole::split("admin,owner"), None);
        assert_eq!(AdminRole::describe(&roles), "`approver` or `auditor`");
    }
}
