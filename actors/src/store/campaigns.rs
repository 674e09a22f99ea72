//! Outbound campaigns: the campaign with its contacts (one transaction), the tenant's reads,
//! status changes (one conditional `UPDATE … RETURNING`), and the dialer's claims.
//!
//! A dialer claims one **pacing slot** of a running campaign by moving `next_dial_at` forward
//! with a compare-and-set (`WHERE next_dial_at = <read value>`, with the concurrency and the
//! per-minute count checked in the same statement), and in the same transaction one due
//! contact and its attempt row: of several nodes, exactly one gets each slot and each
//! contact attempt. An attempt carries a lease; one whose lease expired before its call was
//! recorded (`claimed`) is claimed again and resolved through its idempotency key.

use super::webhooks::insert_event;
use super::{Page, Store, StoreError, as_i64, on_pool};
use crate::campaign::{
    Attempt, AttemptOutcome, Campaign, CampaignStatus, Contact, ContactState, MachineAction,
    NewCampaign, Progress, RetryPolicy,
};
use crate::ids::{CallId, CampaignAttemptId, CampaignContactId, CampaignId, TenantId};
use crate::operator::BusinessHours;

/// Rows of `(value, count)`.
type Counts = Vec<(String, i64)>;

#[derive(sqlx::FromRow)]
struct CampaignRow {
    id: String,
    tenant_id: String,
    name: String,
    agent_key: Option<String>,
    agent_version_id: Option<String>,
    from_number: Option<String>,
    machine_detection: Option<String>,
    calling_windows: Option<String>,
    calls_per_minute: i64,
    max_concurrent: i64,
    retry: String,
    status: String,
    contacts_total: i64,
    created_at: i64,
    updated_at: i64,
    completed_at: Option<i64>,
    paused_reason: Option<String>,
}

const CAMPAIGN_COLUMNS: &str = "id, tenant_id, name, agent_key, agent_version_id, from_number, \
     machine_detection, calling_windows, calls_per_minute, max_concurrent, retry, status, \
     contacts_total, created_at, updated_at, completed_at, paused_reason";

impl TryFrom<CampaignRow> for Campaign {
    type Error = StoreError;

    fn try_from(r: CampaignRow) -> Result<Self, StoreError> {
        let calling_windows = match r.calling_windows {
            Some(text) => {
                let spec = serde_json::from_str(&text)
                    .map_err(|_| StoreError::Corrupt("campaigns.calling_windows"))?;
                Some(
                    BusinessHours::parse(&spec)
                        .map_err(|_| StoreError::Corrupt("campaigns.calling_windows"))?,
                )
            }
            None => None,
        };
        let machine_detection = match r.machine_detection {
            Some(text) => Some(
                MachineAction::parse(&text)
                    .ok_or(StoreError::Corrupt("campaigns.machine_detection"))?,
            ),
            None => None,
        };
        Ok(Campaign {
            id: CampaignId::from_stored(r.id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            name: r.name,
            agent_key: r.agent_key,
            agent_version_id: r.agent_version_id,
            from: r.from_number,
            machine_detection,
            calling_windows,
            calls_per_minute: r.calls_per_minute,
            max_concurrent: r.max_concurrent,
            retry: serde_json::from_str::<RetryPolicy>(&r.retry)
                .map_err(|_| StoreError::Corrupt("campaigns.retry"))?,
            status: CampaignStatus::parse(&r.status)
                .ok_or(StoreError::Corrupt("campaigns.status"))?,
            contacts_total: r.contacts_total,
            created_at: r.created_at,
            updated_at: r.updated_at,
            completed_at: r.completed_at,
            paused_reason: r.paused_reason,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ContactRow {
    id: String,
    campaign_id: String,
    position: i64,
    phone: String,
    variables: String,
    external_id: Option<String>,
    state: String,
    attempts: i64,
    last_outcome: Option<String>,
    skip_rule: Option<String>,
    next_attempt_at: i64,
    updated_at: i64,
}

const CONTACT_COLUMNS: &str = "id, campaign_id, position, phone, variables, external_id, state, \
     attempts, last_outcome, skip_rule, next_attempt_at, updated_at";

impl TryFrom<ContactRow> for Contact {
    type Error = StoreError;

    fn try_from(r: ContactRow) -> Result<Self, StoreError> {
        Ok(Contact {
            id: CampaignContactId::from_stored(r.id),
            campaign_id: CampaignId::from_stored(r.campaign_id),
            position: r.position,
            phone: r.phone,
            variables: serde_json::from_str(&r.variables)
                .map_err(|_| StoreError::Corrupt("campaign_contacts.variables"))?,
            external_id: r.external_id,
            state: ContactState::parse(&r.state)
                .ok_or(StoreError::Corrupt("campaign_contacts.state"))?,
            attempts: r.attempts,
            last_outcome: r.last_outcome.as_deref().and_then(AttemptOutcome::parse),
            skip_rule: r.skip_rule,
            next_attempt_at: r.next_attempt_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    id: String,
    contact_id: String,
    attempt: i64,
    state: String,
    call_id: Option<String>,
    outcome: Option<String>,
    detail: Option<String>,
    started_at: i64,
    settled_at: Option<i64>,
    next_attempt_at: Option<i64>,
}

const ATTEMPT_COLUMNS: &str = "id, contact_id, attempt, state, call_id, outcome, detail, \
     started_at, settled_at, next_attempt_at";

impl From<AttemptRow> for Attempt {
    fn from(r: AttemptRow) -> Self {
        Attempt {
            id: CampaignAttemptId::from_stored(r.id),
            contact_id: CampaignContactId::from_stored(r.contact_id),
            attempt: r.attempt,
            state: r.state,
            call_id: r.call_id.map(CallId::from_stored),
            outcome: r.outcome.as_deref().and_then(AttemptOutcome::parse),
            detail: r.detail,
            started_at: r.started_at,
            settled_at: r.settled_at,
            next_attempt_at: r.next_attempt_at,
        }
    }
}

/// An attempt a dialer holds (claimed now, or claimed again after its lease expired):
/// everything its placement needs.
#[derive(Debug, Clone)]
pub struct ClaimedAttempt {
    /// The attempt.
    pub id: CampaignAttemptId,
    /// Its lease token.
    pub lease_token: String,
    /// The campaign.
    pub campaign: Campaign,
    /// The contact.
    pub contact: Contact,
    /// 1-based attempt number.
    pub attempt: i64,
    /// The placement's idempotency key.
    pub key: String,
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    campaign_id: String,
    contact_id: String,
    attempt: i64,
    idempotency_key: String,
}

/// A placed attempt whose call has completed, to settle.
#[derive(Debug, Clone)]
pub struct CompletedAttempt {
    /// The attempt.
    pub id: CampaignAttemptId,
    /// Its campaign.
    pub campaign_id: CampaignId,
    /// Its contact.
    pub contact_id: CampaignContactId,
    /// Its call.
    pub call_id: CallId,
}

/// How an attempt is settled.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The outcome.
    pub outcome: AttemptOutcome,
    /// Detail (the refusing rule and reason, the end reason).
    pub detail: Option<String>,
    /// The contact's next state.
    pub contact_state: ContactState,
    /// When the next attempt is due (with `pending`).
    pub next_attempt_at: Option<i64>,
    /// The rule that skipped it (with `skipped`).
    pub skip_rule: Option<String>,
    /// Whether the attempt counts against the retry policy (it was dialed).
    pub dialed: bool,
    /// Now.
    pub at: i64,
}

impl Store {
    /// Stores a campaign and all its contacts in one transaction.
    pub async fn create_campaign(&self, c: &NewCampaign, now: i64) -> Result<(), StoreError> {
        let windows = c
            .calling_windows
            .as_ref()
            .map(|w| serde_json::to_string(&w.to_spec()))
            .transpose()
            .map_err(|_| StoreError::Corrupt("campaigns.calling_windows"))?;
        let machine = c.machine_detection.map(MachineAction::as_str);
        let retry =
            serde_json::to_string(&c.retry).map_err(|_| StoreError::Corrupt("campaigns.retry"))?;
        let total = i64::try_from(c.contacts.len()).unwrap_or(i64::MAX);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO campaigns (id, tenant_id, name, agent_key, agent_version_id, from_number, \
                 machine_detection, calling_windows, calls_per_minute, max_concurrent, retry, status, \
                 next_dial_at, contacts_total, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $13, $13)",
            )
            .bind(c.id.as_str())
            .bind(c.tenant_id.as_str())
            .bind(&c.name)
            .bind(&c.agent_key)
            .bind(&c.agent_version_id)
            .bind(&c.from)
            .bind(machine)
            .bind(&windows)
            .bind(c.calls_per_minute)
            .bind(c.max_concurrent)
            .bind(&retry)
            .bind(c.status.as_str())
            .bind(now)
            .bind(total)
            .execute(&mut *tx)
            .await?;
            for (i, contact) in c.contacts.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO campaign_contacts (id, campaign_id, tenant_id, position, phone, variables, \
                     external_id, state, attempts, dialed, next_attempt_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, 0, $8, $8)",
                )
                .bind(CampaignContactId::generate().as_str())
                .bind(c.id.as_str())
                .bind(c.tenant_id.as_str())
                .bind(i64::try_from(i).unwrap_or(i64::MAX))
                .bind(&contact.phone)
                .bind(contact.variables.to_string())
                .bind(&contact.external_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// One campaign of the tenant.
    pub async fn get_campaign(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
    ) -> Result<Option<Campaign>, StoreError> {
        let row: Option<CampaignRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(Campaign::try_from).transpose()
    }

    /// The tenant's campaigns, newest first.
    pub async fn list_campaigns(
        &self,
        tenant: &TenantId,
        limit: u32,
        offset: u32,
    ) -> Result<Page<Campaign>, StoreError> {
        let (rows, total): (Vec<CampaignRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE tenant_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
            )))
            .bind(tenant.as_str())
            .bind(as_i64(limit))
            .bind(as_i64(offset))
            .fetch_all(pool)
            .await?;
            let total = sqlx::query_scalar("SELECT COUNT(*) FROM campaigns WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        Ok(Page {
            items: rows
                .into_iter()
                .map(Campaign::try_from)
                .collect::<Result<_, _>>()?,
            total,
        })
    }

    /// The contact and attempt counts of the tenant's campaign.
    pub async fn campaign_progress(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
    ) -> Result<Progress, StoreError> {
        let (states, outcomes, attempts): (Counts, Counts, i64) = on_pool!(self, pool => {
            let states = sqlx::query_as(
                "SELECT state, COUNT(*) FROM campaign_contacts WHERE campaign_id = $1 AND tenant_id = $2 \
                 GROUP BY state",
            )
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?;
            let outcomes = sqlx::query_as(
                "SELECT last_outcome, COUNT(*) FROM campaign_contacts WHERE campaign_id = $1 AND tenant_id = $2 \
                 AND state IN ('completed', 'skipped', 'exhausted') AND last_outcome IS NOT NULL \
                 GROUP BY last_outcome",
            )
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?;
            let attempts = sqlx::query_scalar(
                "SELECT COUNT(*) FROM campaign_attempts WHERE campaign_id = $1 AND tenant_id = $2",
            )
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_one(pool)
            .await?;
            (states, outcomes, attempts)
        });
        let mut p = Progress {
            attempts,
            ..Progress::default()
        };
        for (state, n) in states {
            match ContactState::parse(&state) {
                Some(ContactState::Pending) => p.pending = n,
                Some(ContactState::InProgress) => p.in_progress = n,
                Some(ContactState::Completed) => p.completed = n,
                Some(ContactState::Skipped) => p.skipped = n,
                Some(ContactState::Exhausted) => p.exhausted = n,
                None => return Err(StoreError::Corrupt("campaign_contacts.state")),
            }
        }
        p.outcomes = outcomes.into_iter().collect();
        Ok(p)
    }

    /// Moves the tenant's campaign from one of `from` to `to` (one conditional `UPDATE`);
    /// `None` when no campaign of the tenant is in one of those statuses. Starting it makes
    /// its first slot due at once.
    pub async fn transition_campaign(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
        from: &[CampaignStatus],
        to: CampaignStatus,
        now: i64,
    ) -> Result<Option<Campaign>, StoreError> {
        let allowed = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let row: Option<CampaignRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE campaigns SET status = $3, updated_at = $4, \
                 next_dial_at = CASE WHEN $3 = 'running' THEN $4 ELSE next_dial_at END, \
                 paused_reason = CASE WHEN $3 = 'paused' THEN paused_reason ELSE NULL END \
                 WHERE id = $1 AND tenant_id = $2 AND status IN ({allowed}) \
                 RETURNING {CAMPAIGN_COLUMNS}"
            )))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(to.as_str())
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        row.map(Campaign::try_from).transpose()
    }

    /// A page of the tenant's campaign's contacts (in order) with every attempt of each.
    pub async fn list_campaign_contacts(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
        limit: u32,
        offset: u32,
    ) -> Result<Page<(Contact, Vec<Attempt>)>, StoreError> {
        let (rows, total): (Vec<ContactRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {CONTACT_COLUMNS} FROM campaign_contacts WHERE campaign_id = $1 AND tenant_id = $2 \
                 ORDER BY position LIMIT $3 OFFSET $4"
            )))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(as_i64(limit))
            .bind(as_i64(offset))
            .fetch_all(pool)
            .await?;
            let total = sqlx::query_scalar(
                "SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = $1 AND tenant_id = $2",
            )
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_one(pool)
            .await?;
            (rows, total)
        });
        let (first, last) = match (rows.first(), rows.last()) {
            (Some(a), Some(b)) => (a.position, b.position),
            _ => {
                return Ok(Page {
                    items: Vec::new(),
                    total,
                });
            }
        };
        let attempt_rows: Vec<AttemptRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id \
                 WHERE a.campaign_id = $1 AND a.tenant_id = $2 AND c.position BETWEEN $3 AND $4 \
                 ORDER BY a.attempt",
                ATTEMPT_COLUMNS
                    .split(", ")
                    .map(|c| format!("a.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(first)
            .bind(last)
            .fetch_all(pool)
            .await?
        });
        let mut items = Vec::with_capacity(rows.len());
        let mut attempts: Vec<Attempt> = attempt_rows.into_iter().map(Attempt::from).collect();
        for row in rows {
            let contact = Contact::try_from(row)?;
            let (mine, rest): (Vec<Attempt>, Vec<Attempt>) = attempts
                .into_iter()
                .partition(|a| a.contact_id == contact.id);
            attempts = rest;
            items.push((contact, mine));
        }
        Ok(Page { items, total })
    }

    // === the dialer ===

    /// Running campaigns whose next slot is due at `now`, and the earliest future slot of a
    /// running campaign (when to look again).
    pub async fn due_campaigns(
        &self,
        now: i64,
    ) -> Result<(Vec<Campaign>, Option<i64>), StoreError> {
        let (rows, next): (Vec<CampaignRow>, Option<i64>) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE status = 'running' AND next_dial_at <= $1 \
                 ORDER BY next_dial_at LIMIT 100"
            )))
            .bind(now)
            .fetch_all(pool)
            .await?;
            let next = sqlx::query_scalar(
                "SELECT MIN(next_dial_at) FROM campaigns WHERE status = 'running' AND next_dial_at > $1",
            )
            .bind(now)
            .fetch_one(pool)
            .await?;
            (rows, next)
        });
        Ok((
            rows.into_iter()
                .map(Campaign::try_from)
                .collect::<Result<_, _>>()?,
            next,
        ))
    }

    /// Pauses a running campaign whose calls cannot be placed as it is configured (its
    /// `from`, agent or version refused), with the reason; resuming clears it.
    pub async fn pause_campaign_for(
        &self,
        id: &CampaignId,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE campaigns SET status = 'paused', paused_reason = $2, updated_at = $3 \
                 WHERE id = $1 AND status = 'running'",
            )
            .bind(id.as_str())
            .bind(reason)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Moves a running campaign's due slot (at or before `now`) to `to`: a campaign that
    /// could not use it (its window closed, at a limit, nothing due) goes behind the others,
    /// so campaigns held back never keep the rest from being looked at. A slot another node
    /// has just taken (moved past `now`) is left alone.
    pub async fn defer_campaign(
        &self,
        id: &CampaignId,
        now: i64,
        to: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE campaigns SET next_dial_at = $3 WHERE id = $1 AND status = 'running' AND next_dial_at <= $2",
            )
            .bind(id.as_str())
            .bind(now)
            .bind(to)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Claims the next pacing slot of `campaign` and, with it, its most due pending contact
    /// and a new attempt row (leased to `lease_token` until `lease_until`), in one
    /// transaction. `None` (nothing written) when the slot is not due, taken by another
    /// node, the campaign is not running, at `max_concurrent` live attempts or at
    /// `calls_per_minute` attempts in the last minute, or no contact is due.
    pub async fn claim_campaign_attempt(
        &self,
        campaign: &Campaign,
        now: i64,
        lease_until: i64,
        lease_token: &str,
    ) -> Result<Option<ClaimedAttempt>, StoreError> {
        let interval = 60_000 / campaign.calls_per_minute.max(1);
        let claimed: Option<(String, ContactRow, i64)> = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let slot: Option<i64> = sqlx::query_scalar(
                "SELECT next_dial_at FROM campaigns WHERE id = $1 AND status = 'running' AND next_dial_at <= $2",
            )
            .bind(campaign.id.as_str())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(slot) = slot else {
                return Ok(None);
            };
            // Smooth pacing: the next slot follows this one by the interval (a late dialer
            // catches up), but never less than half an interval from now (no burst after
            // an idle spell).
            let next = (slot + interval).max(now + interval / 2);
            let taken = sqlx::query(
                "UPDATE campaigns SET next_dial_at = $3 WHERE id = $1 AND status = 'running' AND next_dial_at = $2 \
                 AND (SELECT COUNT(*) FROM campaign_attempts WHERE campaign_id = $1 AND state IN ('claimed', 'placed')) < max_concurrent \
                 AND (SELECT COUNT(*) FROM campaign_attempts WHERE campaign_id = $1 AND started_at > $4) < calls_per_minute",
            )
            .bind(campaign.id.as_str())
            .bind(slot)
            .bind(next)
            .bind(now - 60_000)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !taken {
                return Ok(None);
            }
            let contact: Option<ContactRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE campaign_contacts SET state = 'in_progress', attempts = attempts + 1, updated_at = $2 \
                 WHERE id = (SELECT id FROM campaign_contacts WHERE campaign_id = $1 AND state = 'pending' \
                 AND next_attempt_at <= $2 ORDER BY next_attempt_at, position LIMIT 1) AND state = 'pending' \
                 RETURNING {CONTACT_COLUMNS}"
            )))
            .bind(campaign.id.as_str())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(contact) = contact else {
                // Nothing due: the slot is not used.
                return Ok(None);
            };
            let attempt_id = CampaignAttemptId::generate();
            let contact_id = CampaignContactId::from_stored(contact.id.clone());
            let key = crate::campaign::attempt_key(&campaign.id, &contact_id, contact.attempts);
            sqlx::query(
                "INSERT INTO campaign_attempts (id, campaign_id, contact_id, tenant_id, attempt, idempotency_key, \
                 state, lease_token, lease_until, started_at) VALUES ($1, $2, $3, $4, $5, $6, 'claimed', $7, $8, $9)",
            )
            .bind(attempt_id.as_str())
            .bind(campaign.id.as_str())
            .bind(&contact.id)
            .bind(campaign.tenant_id.as_str())
            .bind(contact.attempts)
            .bind(&key)
            .bind(lease_token)
            .bind(lease_until)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            let attempt = contact.attempts;
            Some((attempt_id.into_string(), contact, attempt))
        });
        let Some((id, contact, attempt)) = claimed else {
            return Ok(None);
        };
        let contact = Contact::try_from(contact)?;
        let key = crate::campaign::attempt_key(&campaign.id, &contact.id, attempt);
        Ok(Some(ClaimedAttempt {
            id: CampaignAttemptId::from_stored(id),
            lease_token: lease_token.to_owned(),
            campaign: campaign.clone(),
            contact,
            attempt,
            key,
        }))
    }

    /// Claims again, with a new lease, attempts whose lease expired before their call was
    /// recorded (their node died or stopped mid-placement); up to `limit`.
    pub async fn reclaim_campaign_attempts(
        &self,
        now: i64,
        lease_until: i64,
        lease_token: &str,
        limit: u32,
    ) -> Result<Vec<ClaimedAttempt>, StoreError> {
        let rows: Vec<ClaimRow> = on_pool!(self, pool => {
            let any: Option<String> = sqlx::query_scalar(
                "SELECT id FROM campaign_attempts WHERE state = 'claimed' AND lease_until < $1 LIMIT 1",
            )
            .bind(now)
            .fetch_optional(pool)
            .await?;
            if any.is_none() {
                return Ok(Vec::new());
            }
            sqlx::query_as(
                "UPDATE campaign_attempts SET lease_token = $2, lease_until = $3 \
                 WHERE id IN (SELECT id FROM campaign_attempts WHERE state = 'claimed' AND lease_until < $1 LIMIT $4) \
                 AND state = 'claimed' AND lease_until < $1 \
                 RETURNING id, campaign_id, contact_id, attempt, idempotency_key",
            )
            .bind(now)
            .bind(lease_token)
            .bind(lease_until)
            .bind(as_i64(limit))
            .fetch_all(pool)
            .await?
        });
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (campaign, contact): (Option<CampaignRow>, Option<ContactRow>) = on_pool!(self, pool => {
                let campaign = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"
                )))
                .bind(&r.campaign_id)
                .fetch_optional(pool)
                .await?;
                let contact = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {CONTACT_COLUMNS} FROM campaign_contacts WHERE id = $1"
                )))
                .bind(&r.contact_id)
                .fetch_optional(pool)
                .await?;
                (campaign, contact)
            });
            let (Some(campaign), Some(contact)) = (campaign, contact) else {
                return Err(StoreError::Corrupt("campaign_attempts"));
            };
            out.push(ClaimedAttempt {
                id: CampaignAttemptId::from_stored(r.id),
                lease_token: lease_token.to_owned(),
                campaign: Campaign::try_from(campaign)?,
                contact: Contact::try_from(contact)?,
                attempt: r.attempt,
                key: r.idempotency_key,
            });
        }
        Ok(out)
    }

    /// Records the call of a held attempt (`placed`); false when the lease was lost.
    pub async fn campaign_attempt_placed(
        &self,
        attempt: &CampaignAttemptId,
        lease_token: &str,
        call: &CallId,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE campaign_attempts SET state = 'placed', call_id = $3, lease_token = NULL, lease_until = NULL \
                 WHERE id = $1 AND lease_token = $2 AND state = 'claimed'",
            )
            .bind(attempt.as_str())
            .bind(lease_token)
            .bind(call.as_str())
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        });
        Ok(done)
    }

    /// Gives a held attempt back: nothing was dialed (a limit, a node draining). The
    /// attempt row goes, the contact is pending again at `retry_at` with its attempt count
    /// as before; false when the lease was lost.
    pub async fn campaign_attempt_not_placed(
        &self,
        attempt: &CampaignAttemptId,
        contact: &CampaignContactId,
        lease_token: &str,
        retry_at: i64,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let gone = sqlx::query(
                "DELETE FROM campaign_attempts WHERE id = $1 AND lease_token = $2 AND state = 'claimed'",
            )
            .bind(attempt.as_str())
            .bind(lease_token)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if gone {
                sqlx::query(
                    "UPDATE campaign_contacts SET state = 'pending', attempts = attempts - 1, next_attempt_at = $2, \
                     updated_at = $2 WHERE id = $1 AND state = 'in_progress'",
                )
                .bind(contact.as_str())
                .bind(retry_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            gone
        });
        Ok(done)
    }

    /// Extends the lease of a held attempt (its placement is still being reconciled).
    pub async fn campaign_attempt_extend(
        &self,
        attempt: &CampaignAttemptId,
        lease_token: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE campaign_attempts SET lease_until = $3 WHERE id = $1 AND lease_token = $2 AND state = 'claimed'",
            )
            .bind(attempt.as_str())
            .bind(lease_token)
            .bind(lease_until)
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        });
        Ok(done)
    }

    /// The call an idempotency key's request created, if that call is recorded.
    pub async fn idempotency_recorded_call(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<CallId>, StoreError> {
        let found: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT c.id FROM idempotency_keys k JOIN calls c ON c.id = k.call_id \
                 WHERE k.tenant_id = $1 AND k.key = $2 AND c.tenant_id = $1",
            )
            .bind(tenant.as_str())
            .bind(key)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.map(CallId::from_stored))
    }

    /// Forgets a key created before `created_before` whose request created no call (a
    /// refused admission, or a placement that died before recording its call — a call is
    /// recorded before the carrier is asked, so it was never dialed): a retry of the same
    /// attempt runs again. True when it was forgotten.
    pub async fn idempotency_forget_unplaced(
        &self,
        tenant: &TenantId,
        key: &str,
        created_before: i64,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND created_at < $3 \
                 AND (call_id IS NULL OR NOT EXISTS (SELECT 1 FROM calls c WHERE c.id = idempotency_keys.call_id))",
            )
            .bind(tenant.as_str())
            .bind(key)
            .bind(created_before)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Placed attempts whose call has completed (to settle), up to `limit`.
    pub async fn completed_campaign_attempts(
        &self,
        limit: u32,
    ) -> Result<Vec<CompletedAttempt>, StoreError> {
        let rows: Vec<(String, String, String, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT a.id, a.campaign_id, a.contact_id, a.call_id FROM campaign_attempts a \
                 JOIN calls c ON c.id = a.call_id WHERE a.state = 'placed' AND c.completed_at IS NOT NULL \
                 ORDER BY a.started_at LIMIT $1",
            )
            .bind(as_i64(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, campaign, contact, call)| CompletedAttempt {
                id: CampaignAttemptId::from_stored(id),
                campaign_id: CampaignId::from_stored(campaign),
                contact_id: CampaignContactId::from_stored(contact),
                call_id: CallId::from_stored(call),
            })
            .collect())
    }

    /// The number of dialed attempts of a contact so far.
    pub async fn campaign_contact_dialed(
        &self,
        contact: &CampaignContactId,
    ) -> Result<i64, StoreError> {
        let n: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT dialed FROM campaign_contacts WHERE id = $1")
                .bind(contact.as_str())
                .fetch_optional(pool)
                .await?
        });
        n.ok_or(StoreError::Corrupt("campaign_contacts"))
    }

    /// The retry policy of a campaign (any tenant: the dialer's read).
    pub async fn campaign_by_id(&self, id: &CampaignId) -> Result<Option<Campaign>, StoreError> {
        let row: Option<CampaignRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"
            )))
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(Campaign::try_from).transpose()
    }

    /// Settles a placed attempt and moves its contact on, in one transaction; false (nothing
    /// written) when another node settled it first.
    pub async fn settle_campaign_attempt(
        &self,
        attempt: &CompletedAttempt,
        s: &Settlement,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mine = sqlx::query(
                "UPDATE campaign_attempts SET state = 'settled', outcome = $2, detail = $3, settled_at = $4, \
                 next_attempt_at = $5 WHERE id = $1 AND state = 'placed'",
            )
            .bind(attempt.id.as_str())
            .bind(s.outcome.as_str())
            .bind(&s.detail)
            .bind(s.at)
            .bind(s.next_attempt_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if mine {
                sqlx::query(
                    "UPDATE campaign_contacts SET state = $2, last_outcome = $3, skip_rule = $4, \
                     next_attempt_at = COALESCE($5, next_attempt_at), dialed = dialed + $6, updated_at = $7 \
                     WHERE id = $1",
                )
                .bind(attempt.contact_id.as_str())
                .bind(s.contact_state.as_str())
                .bind(s.outcome.as_str())
                .bind(&s.skip_rule)
                .bind(s.next_attempt_at)
                .bind(i64::from(s.dialed))
                .bind(s.at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            mine
        });
        Ok(done)
    }

    /// Whether a dialer round has anything to act on anywhere in the cluster: a running
    /// campaign (slots to claim, completion), or an attempt claimed or placed (a lease to
    /// reclaim, a call to settle). Two index probes: an idle node's round is this one read
    /// instead of five.
    pub async fn campaign_work_pending(&self) -> Result<bool, StoreError> {
        let found: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT id FROM campaigns WHERE status = 'running' \
                 UNION ALL SELECT id FROM campaign_attempts WHERE state IN ('claimed', 'placed') \
                 LIMIT 1",
            )
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }

    /// Completes every running campaign whose contacts are all finished, each with its
    /// `voice.campaign.completed` event (built by `event` from the campaign and its counts)
    /// in the same transaction, once: the conditional `UPDATE` lets one node do it.
    pub async fn complete_finished_campaigns(
        &self,
        now: i64,
        event: impl Fn(&Campaign, &Progress) -> super::NewEvent,
    ) -> Result<Vec<Campaign>, StoreError> {
        let ids: Vec<(String, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, tenant_id FROM campaigns c WHERE status = 'running' AND NOT EXISTS \
                 (SELECT 1 FROM campaign_contacts k WHERE k.campaign_id = c.id AND k.state IN ('pending', 'in_progress')) \
                 LIMIT 50",
            )
            .fetch_all(pool)
            .await?
        });
        let mut done = Vec::new();
        for (id, tenant) in ids {
            let id = CampaignId::from_stored(id);
            let progress = self
                .campaign_progress(&TenantId::from_stored(tenant), &id)
                .await?;
            let completed: Option<Campaign> = on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let row: Option<CampaignRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE campaigns SET status = 'completed', completed_at = $2, updated_at = $2 \
                     WHERE id = $1 AND status = 'running' AND NOT EXISTS \
                     (SELECT 1 FROM campaign_contacts k WHERE k.campaign_id = $1 AND k.state IN ('pending', 'in_progress')) \
                     RETURNING {CAMPAIGN_COLUMNS}"
                )))
                .bind(id.as_str())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                match row {
                    Some(row) => {
                        let campaign = Campaign::try_from(row)?;
                        let new = event(&campaign, &progress);
                        let _ = insert_event!(&mut *tx, &new);
                        tx.commit().await?;
                        Some(campaign)
                    }
                    None => None,
                }
            });
            if let Some(c) = completed {
                done.push(c);
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::{CampaignSpec, ContactSpec, validate};
    use crate::store::IdempotencyBegin;

    async fn running(
        store: &Store,
        tenant: &TenantId,
        contacts: usize,
        cpm: i64,
        max: i64,
    ) -> Campaign {
        let spec = CampaignSpec {
            name: "c".into(),
            agent_key: None,
            agent_version_id: None,
            from: None,
            contacts: (0..contacts)
                .map(|i| ContactSpec {
                    phone: format!("+1555400{i:04}"),
                    variables: None,
                    external_id: None,
                })
                .collect(),
            calling_windows: None,
            calls_per_minute: cpm,
            max_concurrent: max,
            retry: RetryPolicy::default(),
            machine_detection: None,
            start: true,
        };
        let new = validate(tenant, spec).expect("valid");
        store.create_campaign(&new, 1_000).await.expect("create");
        store
            .get_campaign(tenant, &new.id)
            .await
            .expect("get")
            .expect("campaign")
    }

    #[tokio::test]
    async fn a_slot_goes_to_one_claim_and_pacing_and_concurrency_hold() {
        let store = crate::store::fixtures::store().await;
        let tenant = crate::store::fixtures::tenant(&store).await;
        let other = crate::store::fixtures::tenant(&store).await;
        let c = running(&store, &tenant, 5, 60, 2).await;
        // Another tenant does not see it.
        assert!(
            store
                .get_campaign(&other, &c.id)
                .await
                .expect("get")
                .is_none()
        );
        let now = 10_000;
        let first = store
            .claim_campaign_attempt(&c, now, now + 30_000, "a")
            .await
            .expect("claim")
            .expect("a slot is due");
        assert_eq!(first.attempt, 1);
        assert_eq!(
            first.key,
            crate::campaign::attempt_key(&c.id, &first.contact.id, 1)
        );
        // The same moment again (another node): the slot is taken.
        assert!(
            store
                .claim_campaign_attempt(&c, now, now + 30_000, "b")
                .await
                .expect("claim")
                .is_none()
        );
        // After an idle spell the next slot is half an interval (1 s at 60 a minute) later,
        // then one interval after each.
        assert!(
            store
                .claim_campaign_attempt(&c, now + 499, now + 30_000, "b")
                .await
                .expect("claim")
                .is_none()
        );
        let second = store
            .claim_campaign_attempt(&c, now + 500, now + 30_000, "b")
            .await
            .expect("claim")
            .expect("next slot");
        assert_ne!(first.contact.id, second.contact.id);
        // Two attempts live: max_concurrent holds, whenever the slot is due.
        assert!(
            store
                .claim_campaign_attempt(&c, now + 5_000, now + 30_000, "c")
                .await
                .expect("claim")
                .is_none()
        );
        let p = store
            .campaign_progress(&c.tenant_id, &c.id)
            .await
            .expect("progress");
        assert_eq!((p.pending, p.in_progress, p.attempts), (3, 2, 2));
    }

    #[tokio::test]
    async fn dialer_work_is_pending_while_a_campaign_runs_or_an_attempt_is_in_flight() {
        let store = crate::store::fixtures::store().await;
        let tenant = crate::store::fixtures::tenant(&store).await;
        assert!(
            !store.campaign_work_pending().await.expect("read"),
            "no campaign"
        );
        let c = running(&store, &tenant, 2, 600, 5).await;
        assert!(
            store.campaign_work_pending().await.expect("read"),
            "running"
        );
        let now = crate::time::now_ms();
        let claimed = store
            .claim_campaign_attempt(&c, now, now + 30_000, "a")
            .await
            .expect("claim")
            .expect("a slot is due");
        // Paused with an attempt in flight: its call is still to settle.
        let paused = store
            .transition_campaign(
                &tenant,
                &c.id,
                &[CampaignStatus::Running],
                CampaignStatus::Paused,
                now,
            )
            .await
            .expect("pause");
        assert!(paused.is_some());
        assert!(
            store.campaign_work_pending().await.expect("read"),
            "in flight"
        );
        // Nothing running and the attempt given back: idle.
        assert!(
            store
                .campaign_attempt_not_placed(&claimed.id, &claimed.contact.id, "a", now)
                .await
                .expect("give back")
        );
        assert!(!store.campaign_work_pending().await.expect("read"), "idle");
    }

    #[tokio::test]
    async fn an_attempt_claimed_again_finds_the_call_placed_under_its_key() {
        let store = crate::store::fixtures::store().await;
        let tenant = crate::store::fixtures::tenant(&store).await;
        let c = running(&store, &tenant, 2, 600, 5).await;
        let now = crate::time::now_ms();
        // Claimed by a node that then died: its lease is already over.
        let placed = store
            .claim_campaign_attempt(&c, now, now - 1, "dead")
            .await
            .expect("claim")
            .expect("claimed");
        let unplaced = store
            .claim_campaign_attempt(&c, now + 100, now - 1, "dead")
            .await
            .expect("claim")
            .expect("claimed");
        // The first got as far as recording its call under its key; the second never
        // reached the outbound module.
        assert_eq!(
            store
                .idempotency_begin(&tenant, &placed.key, "h", 60_000)
                .await
                .expect("begin"),
            IdempotencyBegin::Started
        );
        let mut call = crate::store::fixtures::call(&tenant);
        call.call_sid = None;
        store
            .idempotency_attach(&tenant, &placed.key, &call.id)
            .await
            .expect("attach");
        store
            .admit_call(&call, i64::MAX, None, 0)
            .await
            .expect("admit");

        let again = store
            .reclaim_campaign_attempts(now + 200, now + 30_000, "alive", 10)
            .await
            .expect("reclaim");
        assert_eq!(again.len(), 2);
        let first = again
            .iter()
            .find(|a| a.id == placed.id)
            .expect("placed one");
        assert_eq!(first.key, placed.key, "the same key: the same placement");
        // Its key is still in progress and names the recorded call: the attempt is that call.
        assert_eq!(
            store
                .idempotency_begin(&tenant, &first.key, "h", 60_000)
                .await
                .expect("begin"),
            IdempotencyBegin::InProgress
        );
        assert_eq!(
            store
                .idempotency_recorded_call(&tenant, &first.key)
                .await
                .expect("lookup"),
            Some(call.id.clone())
        );
        assert!(
            store
                .campaign_attempt_placed(&first.id, "alive", &call.id)
                .await
                .expect("placed")
        );
        // The dead node's lease is gone: its late write changes nothing.
        assert!(
            !store
                .campaign_attempt_placed(&first.id, "dead", &call.id)
                .await
                .expect("placed")
        );
        // The other has no call under its key: it is placed from scratch.
        let second = again
            .iter()
            .find(|a| a.id == unplaced.id)
            .expect("unplaced one");
        assert_eq!(
            store
                .idempotency_begin(&tenant, &second.key, "h", 60_000)
                .await
                .expect("begin"),
            IdempotencyBegin::Started
        );
        assert!(
            store
                .idempotency_recorded_call(&tenant, &second.key)
                .await
                .expect("lookup")
                .is_none()
        );
        // A placement refused for a limit gives the attempt back, uncounted.
        store
            .idempotency_forget_unplaced(&tenant, &second.key, i64::MAX)
            .await
            .expect("forget");
        assert!(
            store
                .campaign_attempt_not_placed(&second.id, &second.contact.id, "alive", now + 2_000)
                .await
                .expect("given back")
        );
        let p = store
            .campaign_progress(&c.tenant_id, &c.id)
            .await
            .expect("progress");
        assert_eq!((p.pending, p.in_progress, p.attempts), (1, 1, 1));
        // A key whose call was recorded is never forgotten, however old.
        assert!(
            !store
                .idempotency_forget_unplaced(&tenant, &placed.key, i64::MAX)
                .await
                .expect("forget")
        );
        // A placement that died after tying its key to a call it never recorded: young, it
        // may still be preparing and is kept; stale, it never reached the carrier and goes.
        let dead = "campaign:dead-placement";
        store
            .idempotency_begin(&tenant, dead, "h", 60_000)
            .await
            .expect("begin");
        let never = crate::store::fixtures::call(&tenant);
        store
            .idempotency_attach(&tenant, dead, &never.id)
            .await
            .expect("attach");
        let created = crate::time::now_ms();
        assert!(
            !store
                .idempotency_forget_unplaced(&tenant, dead, created - 120_000)
                .await
                .expect("young")
        );
        assert!(
            store
                .idempotency_forget_unplaced(&tenant, dead, created + 120_000)
                .await
                .expect("stale")
        );
    }
}
