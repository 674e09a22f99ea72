//! Governance storage: admin identities, tenant governance settings, the do-not-call list,
//! dial policies, daily dial-attempt counters and pre-dial decisions. Every change an admin
//! or tenant makes is written with its audit row in one transaction; tenant-owned rows are
//! always read by tenant.

use serde_json::Value;

use super::audit::insert_audit;
use super::{NewAudit, Page, Store, StoreError, as_i64, on_pool};
use crate::governance::AdminRole;
use crate::governance::dnc::{DncEntry, DncSource};
use crate::governance::identities::AdminIdentity;
use crate::governance::launch::{LaunchApproval, LaunchRecord};
use crate::governance::predial::{Check, Decision, DialPolicy, DialPolicySpec, Rule};
use crate::governance::settings::TenantGovernance;
use crate::ids::{AdminIdentityId, AgentVersionId, CallId, TenantId};
use crate::operator::BusinessHours;

#[derive(sqlx::FromRow)]
struct IdentityRow {
    id: String,
    name: String,
    roles: String,
    prefix: String,
    created_by: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

const IDENTITY_COLUMNS: &str = "id, name, roles, prefix, created_by, created_at, revoked_at";

impl TryFrom<IdentityRow> for AdminIdentity {
    type Error = StoreError;

    fn try_from(row: IdentityRow) -> Result<Self, StoreError> {
        Ok(AdminIdentity {
            id: AdminIdentityId::from_stored(row.id),
            name: row.name,
            roles: AdminRole::split(&row.roles)
                .ok_or(StoreError::Corrupt("admin_identities.roles"))?,
            prefix: row.prefix,
            created_by: row.created_by,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct DncRow {
    tenant_id: String,
    number: String,
    source: String,
    reason: Option<String>,
    call_id: Option<String>,
    created_at: i64,
}

const DNC_COLUMNS: &str = "tenant_id, number, source, reason, call_id, created_at";

impl TryFrom<DncRow> for DncEntry {
    type Error = StoreError;

    fn try_from(row: DncRow) -> Result<Self, StoreError> {
        Ok(DncEntry {
            tenant_id: TenantId::from_stored(row.tenant_id),
            number: row.number,
            source: DncSource::parse(&row.source)
                .ok_or(StoreError::Corrupt("dnc_numbers.source"))?,
            reason: row.reason,
            call_id: row.call_id.map(CallId::from_stored),
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    calling_hours: Option<String>,
    daily_attempt_limit: Option<i64>,
    updated_at: i64,
}

impl TryFrom<PolicyRow> for DialPolicy {
    type Error = StoreError;

    fn try_from(row: PolicyRow) -> Result<Self, StoreError> {
        let calling_hours = match row.calling_hours {
            None => None,
            Some(text) => {
                let spec = serde_json::from_str(&text)
                    .map_err(|_| StoreError::Corrupt("dial_policies.calling_hours"))?;
                Some(
                    BusinessHours::parse(&spec)
                        .map_err(|_| StoreError::Corrupt("dial_policies.calling_hours"))?,
                )
            }
        };
        let spec = DialPolicySpec {
            calling_hours: None,
            daily_attempt_limit: row.daily_attempt_limit,
        };
        let parsed =
            DialPolicy::parse(&spec).map_err(|_| StoreError::Corrupt("dial_policies.limit"))?;
        Ok(DialPolicy {
            calling_hours,
            daily_attempt_limit: parsed.daily_attempt_limit,
            updated_at: Some(row.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct DecisionRow {
    call_id: String,
    tenant_id: String,
    to_number: String,
    allowed: bool,
    rule: Option<String>,
    checks: String,
    decided_at: i64,
}

impl TryFrom<DecisionRow> for Decision {
    type Error = StoreError;

    fn try_from(row: DecisionRow) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt("predial_decisions.checks");
        let stored: Vec<Value> = serde_json::from_str(&row.checks).map_err(|_| corrupt())?;
        let checks = stored
            .into_iter()
            .map(|c| {
                Some(Check {
                    rule: Rule::parse(c.get("rule")?.as_str()?)?,
                    passed: c.get("passed")?.as_bool()?,
                    detail: c.get("detail").cloned().unwrap_or(Value::Null),
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(corrupt)?;
        let rule = match row.rule {
            None => None,
            Some(r) => Some(Rule::parse(&r).ok_or(StoreError::Corrupt("predial_decisions.rule"))?),
        };
        Ok(Decision {
            call_id: CallId::from_stored(row.call_id),
            tenant_id: TenantId::from_stored(row.tenant_id),
            to: row.to_number,
            allowed: row.allowed,
            rule,
            checks,
            decided_at: row.decided_at,
            attempt_day: None,
        })
    }
}

impl Store {
    // === Admin identities ===

    /// Inserts an identity (its key's hash only) and its audit row; `Conflict("name")` when
    /// the name was ever used.
    pub async fn insert_admin_identity(
        &self,
        identity: &AdminIdentity,
        key_hash: &str,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let r: Result<(), StoreError> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO admin_identities (id, name, roles, prefix, key_hash, created_by, created_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
            )
            .bind(identity.id.as_str())
            .bind(&identity.name)
            .bind(AdminRole::join(&identity.roles))
            .bind(&identity.prefix)
            .bind(key_hash)
            .bind(&identity.created_by)
            .bind(identity.created_at)
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(())
        }.await);
        r.map_err(|e| {
            if e.is_unique_violation() {
                StoreError::Conflict("name")
            } else {
                e
            }
        })
    }

    /// Every identity, newest first.
    pub async fn list_admin_identities(&self) -> Result<Vec<AdminIdentity>, StoreError> {
        let rows: Vec<IdentityRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {IDENTITY_COLUMNS} FROM admin_identities ORDER BY created_at DESC, id"
            )))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(AdminIdentity::try_from).collect()
    }

    /// One identity.
    pub async fn get_admin_identity(
        &self,
        id: &AdminIdentityId,
    ) -> Result<Option<AdminIdentity>, StoreError> {
        let row: Option<IdentityRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {IDENTITY_COLUMNS} FROM admin_identities WHERE id = $1"
            )))
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(AdminIdentity::try_from).transpose()
    }

    /// Marks an identity revoked with its audit row; false when it was revoked already.
    pub async fn revoke_admin_identity(
        &self,
        id: &AdminIdentityId,
        at: i64,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE admin_identities SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(at)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                insert_audit!(&mut *tx, audit)?;
                tx.commit().await?;
            }
            n == 1
        });
        Ok(changed)
    }

    /// The identity whose key hashes to `hash`, with the stored hash (compared again in
    /// constant time by the caller).
    pub async fn admin_identity_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(AdminIdentity, String)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            identity: IdentityRow,
            key_hash: String,
        }
        let row: Option<Row> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {IDENTITY_COLUMNS}, key_hash FROM admin_identities WHERE key_hash = $1"
            )))
            .bind(hash)
            .fetch_optional(pool)
            .await?
        });
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((AdminIdentity::try_from(r.identity)?, r.key_hash))),
        }
    }

    // === Tenant governance ===

    /// A tenant's governance settings, when ever set.
    pub async fn tenant_governance(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<TenantGovernance>, StoreError> {
        let row: Option<(bool, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT two_person_approval, updated_at FROM tenant_governance WHERE tenant_id = $1",
            )
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(two_person_approval, at)| TenantGovernance {
            two_person_approval,
            updated_at: Some(at),
        }))
    }

    /// Replaces a tenant's governance settings with their audit row.
    pub async fn put_tenant_governance(
        &self,
        tenant: &TenantId,
        settings: &TenantGovernance,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO tenant_governance (tenant_id, two_person_approval, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET two_person_approval = excluded.two_person_approval, \
                 updated_at = excluded.updated_at",
            )
            .bind(tenant.as_str())
            .bind(settings.two_person_approval)
            .bind(settings.updated_at.unwrap_or_default())
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The identity that created an agent version: the actor of its `agent_version.create`
    /// audit row (written in the version's transaction).
    pub async fn version_author(&self, id: &AgentVersionId) -> Result<Option<String>, StoreError> {
        let actor: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT actor FROM audit_log WHERE target_type = 'agent_version' AND target_id = $1 \
                 AND action = 'agent_version.create' ORDER BY id LIMIT 1",
            )
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(actor)
    }

    // === Do-not-call list ===

    /// Lists `entries` not listed yet (a listed number keeps its first entry) with one audit
    /// row; answers how many were new. Nothing new: no audit row.
    pub async fn insert_dnc(
        &self,
        entries: &[DncEntry],
        audit: &NewAudit,
    ) -> Result<usize, StoreError> {
        let added = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut added = 0usize;
            for e in entries {
                let n = sqlx::query(
                    "INSERT INTO dnc_numbers (tenant_id, number, source, reason, call_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, number) DO NOTHING",
                )
                .bind(e.tenant_id.as_str())
                .bind(&e.number)
                .bind(e.source.as_str())
                .bind(&e.reason)
                .bind(e.call_id.as_ref().map(CallId::as_str))
                .bind(e.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                added += usize::from(n == 1);
            }
            if added > 0 {
                insert_audit!(&mut *tx, audit)?;
                tx.commit().await?;
            }
            added
        });
        Ok(added)
    }

    /// A listed number of `tenant`.
    pub async fn get_dnc(
        &self,
        tenant: &TenantId,
        number: &str,
    ) -> Result<Option<DncEntry>, StoreError> {
        let row: Option<DncRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DNC_COLUMNS} FROM dnc_numbers WHERE tenant_id = $1 AND number = $2"
            )))
            .bind(tenant.as_str())
            .bind(number)
            .fetch_optional(pool)
            .await?
        });
        row.map(DncEntry::try_from).transpose()
    }

    /// Removes a listed number of `tenant` with its audit row; false when it is not listed.
    pub async fn delete_dnc(
        &self,
        tenant: &TenantId,
        number: &str,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let removed = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query("DELETE FROM dnc_numbers WHERE tenant_id = $1 AND number = $2")
                .bind(tenant.as_str())
                .bind(number)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 1 {
                insert_audit!(&mut *tx, audit)?;
                tx.commit().await?;
            }
            n == 1
        });
        Ok(removed)
    }

    /// A tenant's list, newest first.
    pub async fn list_dnc(
        &self,
        tenant: &TenantId,
        limit: u32,
        offset: u32,
    ) -> Result<Page<DncEntry>, StoreError> {
        let (rows, total): (Vec<DncRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {DNC_COLUMNS} FROM dnc_numbers WHERE tenant_id = $1 \
                 ORDER BY created_at DESC, number LIMIT $2 OFFSET $3"
            )))
            .bind(tenant.as_str())
            .bind(as_i64(limit))
            .bind(as_i64(offset))
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dnc_numbers WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        Ok(Page {
            items: rows
                .into_iter()
                .map(DncEntry::try_from)
                .collect::<Result<_, _>>()?,
            total,
        })
    }

    // === Dial policies ===

    /// The dial policy of `scope` (`tenant` or a route id) of `tenant`, when set.
    pub async fn dial_policy(
        &self,
        tenant: &TenantId,
        scope: &str,
    ) -> Result<Option<DialPolicy>, StoreError> {
        let row: Option<PolicyRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT calling_hours, daily_attempt_limit, updated_at FROM dial_policies \
                 WHERE tenant_id = $1 AND scope = $2",
            )
            .bind(tenant.as_str())
            .bind(scope)
            .fetch_optional(pool)
            .await?
        });
        row.map(DialPolicy::try_from).transpose()
    }

    /// Replaces the dial policy of `scope` with its audit row.
    pub async fn put_dial_policy(
        &self,
        tenant: &TenantId,
        scope: &str,
        policy: &DialPolicy,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let hours = policy
            .calling_hours
            .as_ref()
            .map(|h| serde_json::to_string(&h.to_spec()).unwrap_or_default());
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO dial_policies (tenant_id, scope, calling_hours, daily_attempt_limit, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, scope) DO UPDATE SET \
                 calling_hours = excluded.calling_hours, daily_attempt_limit = excluded.daily_attempt_limit, \
                 updated_at = excluded.updated_at",
            )
            .bind(tenant.as_str())
            .bind(scope)
            .bind(&hours)
            .bind(policy.daily_attempt_limit.map(i64::from))
            .bind(policy.updated_at.unwrap_or_default())
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Counts one attempt to `number` on `day` unless `limit` attempts were counted already:
    /// the attempt's number, or `None` at the limit. One conditional upsert, so concurrent
    /// callers never exceed the limit.
    pub async fn count_dial_attempt(
        &self,
        tenant: &TenantId,
        number: &str,
        day: &str,
        limit: i64,
    ) -> Result<Option<i64>, StoreError> {
        let attempt: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO dial_attempts (tenant_id, number, day, attempts) VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (tenant_id, number, day) DO UPDATE SET attempts = dial_attempts.attempts + 1 \
                 WHERE dial_attempts.attempts < $4 RETURNING attempts",
            )
            .bind(tenant.as_str())
            .bind(number)
            .bind(day)
            .bind(limit)
            .fetch_optional(pool)
            .await?
        });
        Ok(attempt)
    }

    /// Gives back one counted attempt (the placement was refused after the policy).
    pub async fn release_dial_attempt(
        &self,
        tenant: &TenantId,
        number: &str,
        day: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE dial_attempts SET attempts = attempts - 1 \
                 WHERE tenant_id = $1 AND number = $2 AND day = $3 AND attempts > 0",
            )
            .bind(tenant.as_str())
            .bind(number)
            .bind(day)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    // === Pre-dial decisions ===

    /// Stores the decision of a call.
    pub async fn insert_predial_decision(&self, d: &Decision) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO predial_decisions (call_id, tenant_id, to_number, allowed, rule, checks, decided_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(d.call_id.as_str())
            .bind(d.tenant_id.as_str())
            .bind(&d.to)
            .bind(d.allowed)
            .bind(d.rule.map(Rule::as_str))
            .bind(d.checks_json().to_string())
            .bind(d.decided_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The decision of a call of `tenant`.
    pub async fn predial_decision(
        &self,
        tenant: &TenantId,
        call: &CallId,
    ) -> Result<Option<Decision>, StoreError> {
        let row: Option<DecisionRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT call_id, tenant_id, to_number, allowed, rule, checks, decided_at \
                 FROM predial_decisions WHERE tenant_id = $1 AND call_id = $2",
            )
            .bind(tenant.as_str())
            .bind(call.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(Decision::try_from).transpose()
    }

    // === Launch ===

    /// A tenant's launch record, when set.
    pub async fn launch_record(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<LaunchRecord>, StoreError> {
        let row: Option<(String, String, String, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT owner, rollback_path, required_roles, updated_by, updated_at \
                 FROM launch_records WHERE tenant_id = $1",
            )
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(|(owner, rollback_path, roles, updated_by, updated_at)| {
            Ok(LaunchRecord {
                tenant_id: tenant.clone(),
                owner,
                rollback_path,
                required_roles: AdminRole::split(&roles)
                    .ok_or(StoreError::Corrupt("launch_records.required_roles"))?,
                updated_by,
                updated_at,
            })
        })
        .transpose()
    }

    /// Replaces a tenant's launch record with its audit row.
    pub async fn put_launch_record(
        &self,
        record: &LaunchRecord,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO launch_records (tenant_id, owner, rollback_path, required_roles, updated_by, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO UPDATE SET owner = excluded.owner, \
                 rollback_path = excluded.rollback_path, required_roles = excluded.required_roles, \
                 updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            )
            .bind(record.tenant_id.as_str())
            .bind(&record.owner)
            .bind(&record.rollback_path)
            .bind(AdminRole::join(&record.required_roles))
            .bind(&record.updated_by)
            .bind(record.updated_at)
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Stores an approval with its audit row; answers its sequence number.
    pub async fn insert_launch_approval(
        &self,
        approval: &LaunchApproval,
        audit: &NewAudit,
    ) -> Result<i64, StoreError> {
        let id = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO launch_approvals (tenant_id, identity, role, comment, material, approved_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(approval.tenant_id.as_str())
            .bind(&approval.identity)
            .bind(approval.role.as_str())
            .bind(&approval.comment)
            .bind(approval.material.to_string())
            .bind(approval.approved_at)
            .fetch_one(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            id
        });
        Ok(id)
    }

    /// Every approval of a tenant's launch, newest first.
    pub async fn launch_approvals(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<LaunchApproval>, StoreError> {
        let rows: Vec<(i64, String, String, String, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, identity, role, comment, material, approved_at FROM launch_approvals \
                 WHERE tenant_id = $1 ORDER BY id DESC",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, identity, role, comment, material, approved_at)| {
                Ok(LaunchApproval {
                    id,
                    tenant_id: tenant.clone(),
                    identity,
                    role: AdminRole::parse(&role)
                        .ok_or(StoreError::Corrupt("launch_approvals.role"))?,
                    comment,
                    material: serde_json::from_str(&material)
                        .map_err(|_| StoreError::Corrupt("launch_approvals.material"))?,
                    approved_at,
                })
            })
            .collect()
    }

    /// What a launch approval covers: the tenant's routes, and the newest version number of
    /// every routed agent.
    pub async fn launch_material(
        &self,
        tenant: &TenantId,
    ) -> Result<(Vec<LaunchRoute>, Vec<(String, i64)>), StoreError> {
        let (routes, versions) = on_pool!(self, pool => {
            let routes: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT number, agent_key, status, updated_at FROM phone_routes WHERE tenant_id = $1 ORDER BY number",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?;
            let versions: Vec<(String, i64)> = sqlx::query_as(
                "SELECT a.key, MAX(v.version) FROM agents a JOIN agent_versions v ON v.agent_id = a.id \
                 WHERE a.tenant_id = $1 AND a.key IN (SELECT agent_key FROM phone_routes WHERE tenant_id = $1) \
                 GROUP BY a.key ORDER BY a.key",
            )
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?;
            (routes, versions)
        });
        Ok((
            routes
                .into_iter()
                .map(|(number, agent_key, status, updated_at)| LaunchRoute {
                    number,
                    agent_key,
                    status,
                    updated_at,
                })
                .collect(),
            versions,
        ))
    }
}

/// A route as a launch approval covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRoute {
    /// Its number.
    pub number: String,
    /// Its agent.
    pub agent_key: String,
    /// `staged` or `live`.
    pub status: String,
    /// Its last change (Unix ms).
    pub updated_at: i64,
}
