//! Who may approve an agent version. The route's guard has already required the `approver`
//! role (root holds every role); here the tenant's two-person rule: when it is on, the
//! approving identity must differ from the version's author — the identity on the version's
//! `agent_version.create` audit row, written in the same transaction as the version.

use super::GovernanceError;
use crate::store::{AgentVersion, Store};
use crate::tenant::AuditMeta;

/// Refuses the approval of `version` by `meta`'s identity when the tenant's two-person rule
/// forbids it.
pub async fn check(
    store: &Store,
    version: &AgentVersion,
    meta: &AuditMeta,
) -> Result<(), GovernanceError> {
    let governance = store
        .tenant_governance(&version.tenant_id)
        .await?
        .unwrap_or_default();
    if !governance.two_person_approval {
        return Ok(());
    }
    match store.version_author(&version.id).await? {
        Some(author) if author != meta.actor => Ok(()),
        Some(author) => Err(GovernanceError::Forbidden {
            code: "two_person_approval",
            message: format!(
                "the tenant requires two-person approval: version {} was created by {author}, so another approver must approve it",
                version.version
            ),
        }),
        None => Err(GovernanceError::Forbidden {
            code: "two_person_approval",
            message: format!(
                "the tenant requires two-person approval and the author of version {} is not recorded",
                version.version
            ),
        }),
    }
}
