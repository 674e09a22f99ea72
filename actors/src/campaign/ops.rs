//! The campaign API's operations as plain functions over the store (called by the HTTP
//! handlers): create (campaign and contacts in one transaction), reads scoped by tenant, and
//! the status changes (one conditional `UPDATE`; 404 for another tenant's campaign, a
//! conflict for a status the action does not apply to).

use super::{Attempt, Campaign, CampaignAction, CampaignSpec, Contact, Dialer, Progress, validate};
use crate::ids::{CampaignId, TenantId};
use crate::store::{Page, Store, StoreError};
use crate::time::now_ms;

/// Errors of the campaign operations.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// No such campaign of this tenant.
    #[error("campaign not found")]
    NotFound,
    /// Invalid input: the field and why.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
    /// The action does not apply to the campaign's status.
    #[error("{0}")]
    InvalidTransition(String),
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
}

/// Validates and stores a campaign with its contacts; wakes the dialer when it starts now.
pub async fn create(
    store: &Store,
    dialer: &Dialer,
    tenant: &TenantId,
    spec: CampaignSpec,
) -> Result<(Campaign, Progress), CampaignError> {
    let new = validate(tenant, spec).map_err(|e| CampaignError::Invalid {
        field: e.field,
        message: e.message,
    })?;
    store.create_campaign(&new, now_ms()).await?;
    dialer.wake();
    get(store, tenant, &new.id).await
}

/// One campaign of the tenant with its progress.
pub async fn get(
    store: &Store,
    tenant: &TenantId,
    id: &CampaignId,
) -> Result<(Campaign, Progress), CampaignError> {
    let campaign = store
        .get_campaign(tenant, id)
        .await?
        .ok_or(CampaignError::NotFound)?;
    let progress = store.campaign_progress(tenant, id).await?;
    Ok((campaign, progress))
}

/// A page of the tenant's campaigns, newest first, each with its progress.
pub async fn list(
    store: &Store,
    tenant: &TenantId,
    limit: u32,
    offset: u32,
) -> Result<Page<(Campaign, Progress)>, CampaignError> {
    let page = store.list_campaigns(tenant, limit, offset).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for c in page.items {
        let p = store.campaign_progress(tenant, &c.id).await?;
        items.push((c, p));
    }
    Ok(Page {
        items,
        total: page.total,
    })
}

/// Applies `action` to the tenant's campaign.
pub async fn act(
    store: &Store,
    dialer: &Dialer,
    tenant: &TenantId,
    id: &CampaignId,
    action: CampaignAction,
) -> Result<(Campaign, Progress), CampaignError> {
    let (from, to) = action.transition();
    match store
        .transition_campaign(tenant, id, from, to, now_ms())
        .await?
    {
        Some(c) => {
            dialer.wake();
            let p = store.campaign_progress(tenant, &c.id).await?;
            Ok((c, p))
        }
        None => {
            let current = store
                .get_campaign(tenant, id)
                .await?
                .ok_or(CampaignError::NotFound)?;
            Err(CampaignError::InvalidTransition(format!(
                "a {} campaign cannot {}",
                current.status.as_str(),
                action.as_str()
            )))
        }
    }
}

/// A page of the tenant's campaign's contacts with their attempts.
pub async fn contacts(
    store: &Store,
    tenant: &TenantId,
    id: &CampaignId,
    limit: u32,
    offset: u32,
) -> Result<Page<(Contact, Vec<Attempt>)>, CampaignError> {
    store
        .get_campaign(tenant, id)
        .await?
        .ok_or(CampaignError::NotFound)?;
    Ok(store
        .list_campaign_contacts(tenant, id, limit, offset)
        .await?)
}
