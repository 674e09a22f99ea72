//! Agents and agent versions: create (with audit), read, list, edit drafts, approve and
//! retire. Approved versions are never changed: edits to an approved version are refused by
//! the `status = 'draft'` guard in the update itself.

use super::audit::insert_audit;
use super::{
    Agent, AgentVersion, NewAudit, Store, StoreError, TurnDetection, VersionStatus, on_pool,
};
use crate::contract::Contract;
use crate::ids::{AgentId, AgentVersionId, TenantId};

/// The contract's JSON columns: tools, escalation, identity.
fn contract_columns(c: &Contract) -> (String, String, Option<String>) {
    (
        serde_json::to_string(&c.tools).unwrap_or_else(|_| String::from("[]")),
        serde_json::to_string(&c.escalation).unwrap_or_else(|_| String::from(r#"{"rules":[]}"#)),
        c.identity
            .as_ref()
            .and_then(|i| serde_json::to_string(i).ok()),
    )
}

/// The rubric's columns: its canonical JSON and its hash.
fn rubric_columns(v: &AgentVersion) -> (Option<String>, Option<String>) {
    match &v.rubric {
        Some(r) => (Some(r.to_json()), Some(r.hash())),
        None => (None, None),
    }
}

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: String,
    tenant_id: String,
    key: String,
    name: String,
    created_at: i64,
    updated_at: i64,
}

impl From<AgentRow> for Agent {
    fn from(r: AgentRow) -> Self {
        Agent {
            id: AgentId::from_stored(r.id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            key: r.key,
            name: r.name,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    id: String,
    agent_id: String,
    agent_key: String,
    tenant_id: String,
    version: i64,
    status: String,
    model: String,
    voice: String,
    instructions: String,
    greeting: Option<String>,
    voicemail_message: Option<String>,
    transcription_model: Option<String>,
    transcription_language: Option<String>,
    turn_detection: String,
    max_call_seconds: i64,
    idle_timeout_seconds: i64,
    tools: String,
    escalation: String,
    identity: Option<String>,
    rubric: Option<String>,
    recording_policy: Option<String>,
    recording_disclosure: Option<String>,
    created_at: i64,
    approved_at: Option<i64>,
    retired_at: Option<i64>,
}

const VERSION_SELECT: &str = "SELECT v.id, v.agent_id, a.key AS agent_key, v.tenant_id, v.version, v.status, v.model, v.voice, \
     v.instructions, v.greeting, v.transcription_model, v.transcription_language, v.turn_detection, v.max_call_seconds, \
     v.idle_timeout_seconds, v.tools, v.escalation, v.identity, v.rubric, v.recording_policy, v.recording_disclosure, v.created_at, v.approved_at, v.retired_at, v.voicemail_message FROM agent_versions v JOIN agents a ON a.id = v.agent_id";

impl TryFrom<VersionRow> for AgentVersion {
    type Error = StoreError;

    fn try_from(r: VersionRow) -> Result<Self, StoreError> {
        Ok(AgentVersion {
            id: AgentVersionId::from_stored(r.id),
            agent_id: AgentId::from_stored(r.agent_id),
            agent_key: r.agent_key,
            tenant_id: TenantId::from_stored(r.tenant_id),
            version: r.version,
            status: VersionStatus::parse(&r.status)
                .ok_or(StoreError::Corrupt("agent_versions.status"))?,
            model: r.model,
            voice: r.voice,
            instructions: r.instructions,
            greeting: r.greeting,
            voicemail_message: r.voicemail_message,
            transcription_model: r.transcription_model,
            transcription_language: r.transcription_language,
            turn_detection: serde_json::from_str::<TurnDetection>(&r.turn_detection)
                .map_err(|_| StoreError::Corrupt("agent_versions.turn_detection"))?,
            max_call_seconds: r.max_call_seconds,
            idle_timeout_seconds: r.idle_timeout_seconds,
            contract: Contract {
                tools: serde_json::from_str(&r.tools)
                    .map_err(|_| StoreError::Corrupt("agent_versions.tools"))?,
                escalation: serde_json::from_str(&r.escalation)
                    .map_err(|_| StoreError::Corrupt("agent_versions.escalation"))?,
                identity: r
                    .identity
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|_| StoreError::Corrupt("agent_versions.identity"))?,
            },
            // Validated when written; read as stored (no pattern compiled per call start).
            rubric: r
                .rubric
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|_| StoreError::Corrupt("agent_versions.rubric"))?,
            recording_policy: match r.recording_policy.as_deref() {
                Some(p) => Some(
                    crate::recording::RecordingPolicy::parse(p)
                        .ok_or(StoreError::Corrupt("agent_versions.recording_policy"))?,
                ),
                None => None,
            },
            recording_disclosure: r.recording_disclosure,
            created_at: r.created_at,
            approved_at: r.approved_at,
            retired_at: r.retired_at,
        })
    }
}

impl Store {
    /// Inserts an agent and its audit row; `Conflict("key")` when the tenant already has it.
    pub async fn insert_agent(&self, agent: &Agent, audit: &NewAudit) -> Result<(), StoreError> {
        let r: Result<(), StoreError> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO agents (id, tenant_id, key, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(agent.id.as_str())
                .bind(agent.tenant_id.as_str())
                .bind(&agent.key)
                .bind(&agent.name)
                .bind(agent.created_at)
                .bind(agent.updated_at)
                .execute(&mut *tx)
                .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(())
        }.await);
        r.map_err(|e| {
            if e.is_unique_violation() {
                StoreError::Conflict("key")
            } else {
                e
            }
        })
    }

    /// Reads an agent.
    pub async fn get_agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        let row: Option<AgentRow> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id, tenant_id, key, name, created_at, updated_at FROM agents WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(Agent::from))
    }

    /// Finds a tenant's agent by key.
    pub async fn agent_by_key(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> Result<Option<Agent>, StoreError> {
        let row: Option<AgentRow> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id, tenant_id, key, name, created_at, updated_at FROM agents WHERE tenant_id = $1 AND key = $2")
                .bind(tenant.as_str())
                .bind(key)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(Agent::from))
    }

    /// Lists agents (optionally of one tenant), oldest first.
    pub async fn list_agents(&self, tenant: Option<&TenantId>) -> Result<Vec<Agent>, StoreError> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        let rows: Vec<AgentRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, tenant_id, key, name, created_at, updated_at FROM agents \
                 WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY created_at, id",
            )
            .bind(&tenant)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(Agent::from).collect())
    }

    /// Inserts a draft version numbered after the agent's last one; returns its number.
    pub async fn insert_version(
        &self,
        v: &AgentVersion,
        audit: &NewAudit,
    ) -> Result<i64, StoreError> {
        let td = serde_json::to_string(&v.turn_detection).unwrap_or_else(|_| String::from("{}"));
        let (tools, escalation, identity) = contract_columns(&v.contract);
        let (rubric, rubric_hash) = rubric_columns(v);
        let number = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // The number is computed by the insert itself: the transaction's first statement
            // writes, so SQLite takes its write lock and waits for a concurrent writer (a read
            // first could not be upgraded and would fail at once).
            let next: i64 = sqlx::query_scalar(
                "INSERT INTO agent_versions (id, agent_id, tenant_id, version, status, model, voice, instructions, greeting, \
                 transcription_model, transcription_language, turn_detection, max_call_seconds, idle_timeout_seconds, \
                 tools, escalation, identity, created_at, approved_at, retired_at, rubric, rubric_hash, \
                 recording_policy, recording_disclosure, voicemail_message) \
                 SELECT $1, $2, $3, (SELECT COALESCE(MAX(version), $4) + 1 FROM agent_versions WHERE agent_id = $2), 'draft', \
                 $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, NULL, NULL, $18, $19, $20, $21, $22 \
                 RETURNING version",
            )
            .bind(v.id.as_str())
            .bind(v.agent_id.as_str())
            .bind(v.tenant_id.as_str())
            .bind(0_i64)
            .bind(&v.model)
            .bind(&v.voice)
            .bind(&v.instructions)
            .bind(&v.greeting)
            .bind(&v.transcription_model)
            .bind(&v.transcription_language)
            .bind(&td)
            .bind(v.max_call_seconds)
            .bind(v.idle_timeout_seconds)
            .bind(&tools)
            .bind(&escalation)
            .bind(&identity)
            .bind(v.created_at)
            .bind(&rubric)
            .bind(&rubric_hash)
            .bind(v.recording_policy.map(crate::recording::RecordingPolicy::as_str))
            .bind(&v.recording_disclosure)
            .bind(&v.voicemail_message)
            .fetch_one(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            next
        });
        Ok(number)
    }

    /// Rewrites a draft version; false when it is no longer a draft (nothing written).
    pub async fn update_draft_version(
        &self,
        v: &AgentVersion,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let td = serde_json::to_string(&v.turn_detection).unwrap_or_else(|_| String::from("{}"));
        let (tools, escalation, identity) = contract_columns(&v.contract);
        let (rubric, rubric_hash) = rubric_columns(v);
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE agent_versions SET model = $2, voice = $3, instructions = $4, greeting = $5, transcription_model = $6, \
                 transcription_language = $7, turn_detection = $8, max_call_seconds = $9, idle_timeout_seconds = $10, \
                 tools = $11, escalation = $12, identity = $13, rubric = $14, rubric_hash = $15, \
                 recording_policy = $16, recording_disclosure = $17, voicemail_message = $18 WHERE id = $1 AND status = 'draft'",
            )
            .bind(v.id.as_str())
            .bind(&v.model)
            .bind(&v.voice)
            .bind(&v.instructions)
            .bind(&v.greeting)
            .bind(&v.transcription_model)
            .bind(&v.transcription_language)
            .bind(&td)
            .bind(v.max_call_seconds)
            .bind(v.idle_timeout_seconds)
            .bind(&tools)
            .bind(&escalation)
            .bind(&identity)
            .bind(&rubric)
            .bind(&rubric_hash)
            .bind(v.recording_policy.map(crate::recording::RecordingPolicy::as_str))
            .bind(&v.recording_disclosure)
            .bind(&v.voicemail_message)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                insert_audit!(&mut *tx, audit)?;
            }
            tx.commit().await?;
            n == 1
        });
        Ok(changed)
    }

    /// Moves a version from `from` to `to` (approve or retire), stamping the time; false when
    /// it was not in `from`.
    pub async fn transition_version(
        &self,
        id: &AgentVersionId,
        from: VersionStatus,
        to: VersionStatus,
        at: i64,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let sql = match to {
            VersionStatus::Approved => {
                "UPDATE agent_versions SET status = $3, approved_at = $4 WHERE id = $1 AND status = $2"
            }
            VersionStatus::Retired => {
                "UPDATE agent_versions SET status = $3, retired_at = $4 WHERE id = $1 AND status = $2"
            }
            VersionStatus::Draft => return Ok(false),
        };
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(sql)
                .bind(id.as_str())
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 1 {
                insert_audit!(&mut *tx, audit)?;
            }
            tx.commit().await?;
            n == 1
        });
        Ok(changed)
    }

    /// Reads a version.
    pub async fn get_version(
        &self,
        id: &AgentVersionId,
    ) -> Result<Option<AgentVersion>, StoreError> {
        let row: Option<VersionRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{VERSION_SELECT} WHERE v.id = $1")))
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        row.map(AgentVersion::try_from).transpose()
    }

    /// An agent's versions, newest first.
    pub async fn list_versions(&self, agent: &AgentId) -> Result<Vec<AgentVersion>, StoreError> {
        let rows: Vec<VersionRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{VERSION_SELECT} WHERE v.agent_id = $1 ORDER BY v.version DESC")))
                .bind(agent.as_str())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(AgentVersion::try_from).collect()
    }

    /// The newest approved version of a tenant's agent.
    pub async fn current_version(
        &self,
        tenant: &TenantId,
        agent_key: &str,
    ) -> Result<Option<AgentVersion>, StoreError> {
        let row: Option<VersionRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{VERSION_SELECT} WHERE a.tenant_id = $1 AND a.key = $2 AND v.status = 'approved' ORDER BY v.version DESC LIMIT 1"
            )))
            .bind(tenant.as_str())
            .bind(agent_key)
            .fetch_optional(pool)
            .await?
        });
        row.map(AgentVersion::try_from).transpose()
    }
}
