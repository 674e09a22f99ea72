//! Outbound campaigns, tenant API: `POST|GET /api/v1/campaigns`, `GET /api/v1/campaigns/{id}`
//! with progress counts, `POST …/{id}/pause|resume|cancel` (409 `invalid_transition` for a
//! status the action does not apply to) and `GET …/{id}/contacts` with every attempt.
//! Writes need the `runtime` scope (as make-call), reads `read`. The handlers parse and call
//! [`actors::campaign::ops`]; the node's dialer ([`actors::campaign::Dialer`]) places the calls.

use actors::campaign::{
    self, Attempt, Campaign, CampaignAction, CampaignError, CampaignSpec, Contact, ContactSpec,
    MachineAction, Progress, RetryPolicy, RetryRule, ops,
};
use actors::ids::CampaignId;
use actors::tenant::AuthContext;
use actors::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;

use super::admin::json;
use super::filters::{Paging, parse_json, parse_query};
use super::mount::Request;
use super::page::Page;
use super::queues::BusinessHoursDto;
use super::{ApiError, ErrorResponse};

// === DTOs ===

/// One contact of a new campaign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignContactRequest {
    /// Callee, E.164.
    #[schema(format = "e164")]
    pub phone: String,
    /// Per-contact variables (a JSON object, at most 4 KiB), put in the call's metadata as
    /// `variables`.
    #[schema(value_type = Option<Object>)]
    pub variables: Option<serde_json::Value>,
    /// Your reference of the contact.
    #[schema(min_length = 1, max_length = 200, format = "text")]
    pub external_id: Option<String>,
}

/// Pacing of a campaign.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignPacingDto {
    /// Calls started per minute, spread evenly over the minute (1–600).
    #[schema(minimum = 1, maximum = 600)]
    pub calls_per_minute: i64,
    /// Attempts live at once (1–1000); the tenant's concurrency limit holds as well.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_concurrent: i64,
}

/// How one outcome is retried.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignRetryRuleDto {
    /// Dialed attempts a contact may have in all when its last attempt ended this way
    /// (1–10; 1: no retry).
    #[schema(minimum = 1, maximum = 10)]
    pub max_attempts: i64,
    /// Seconds from the end of one attempt to the next (0–604800).
    #[schema(minimum = 0, maximum = 604_800)]
    pub spacing_seconds: i64,
}

/// The retry policy per outcome (an outcome left out is not retried).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignRetryDto {
    /// Nobody answered.
    pub no_answer: Option<CampaignRetryRuleDto>,
    /// The line was busy.
    pub busy: Option<CampaignRetryRuleDto>,
    /// An answering machine answered.
    pub machine: Option<CampaignRetryRuleDto>,
    /// The call failed.
    pub failed: Option<CampaignRetryRuleDto>,
}

fn rule(r: Option<CampaignRetryRuleDto>) -> RetryRule {
    r.map_or_else(RetryRule::default, |r| RetryRule {
        max_attempts: r.max_attempts,
        spacing_seconds: r.spacing_seconds,
    })
}

fn rule_dto(r: RetryRule) -> Option<CampaignRetryRuleDto> {
    Some(CampaignRetryRuleDto {
        max_attempts: r.max_attempts,
        spacing_seconds: r.spacing_seconds,
    })
}

/// What a call does when an answering machine answers.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CampaignMachineActionDto {
    /// Wait for the beep and leave the version's voicemail message.
    Voicemail,
    /// Hang up at once.
    Hangup,
    /// Go on with the conversation.
    Continue,
}

/// Answering-machine detection of every call of the campaign.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignMachineDetectionDto {
    /// The action on a machine.
    pub action: CampaignMachineActionDto,
}

/// Body of `POST /api/v1/campaigns`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaignRequest {
    /// Name (1–200 characters).
    #[schema(min_length = 1, max_length = 200, format = "text")]
    pub name: String,
    /// Agent key (default: the outbound route's).
    #[schema(min_length = 1, max_length = 100, format = "text")]
    pub agent_key: Option<String>,
    /// Pin an agent version.
    #[schema(min_length = 1, max_length = 100, format = "text")]
    pub agent_version_id: Option<String>,
    /// Caller id, E.164: one of the tenant's outbound numbers (default: its outbound route).
    #[schema(format = "e164")]
    pub from: Option<String>,
    /// The contacts (1–1,000, each number once).
    #[schema(min_items = 1, max_items = 1000)]
    pub contacts: Vec<CampaignContactRequest>,
    /// Weekly windows in a time zone when contacts are dialed (the pre-dial policy's
    /// calling hours apply as well); omit to dial whenever the policy allows.
    pub calling_windows: Option<BusinessHoursDto>,
    /// Pacing.
    pub pacing: CampaignPacingDto,
    /// Retries per outcome (default: none).
    pub retry: Option<CampaignRetryDto>,
    /// Answering-machine detection.
    pub machine_detection: Option<CampaignMachineDetectionDto>,
    /// Start dialing now (`running`); default false (`draft`, started by `resume`).
    pub start: Option<bool>,
}

/// Counts of a campaign's contacts and attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignProgressView {
    /// Contacts waiting for an attempt.
    pub pending: i64,
    /// Contacts with an attempt claimed or live.
    pub in_progress: i64,
    /// Contacts answered by a human.
    pub completed: i64,
    /// Contacts refused by do-not-call (never retried).
    pub skipped: i64,
    /// Contacts out of attempts.
    pub exhausted: i64,
    /// Attempts made.
    pub attempts: i64,
    /// Finished contacts by their last outcome (`answered`, `no_answer`, `busy`, `machine`,
    /// `failed`, `refused`).
    #[schema(value_type = Object)]
    pub outcomes: std::collections::BTreeMap<String, i64>,
}

impl From<Progress> for CampaignProgressView {
    fn from(p: Progress) -> Self {
        CampaignProgressView {
            pending: p.pending,
            in_progress: p.in_progress,
            completed: p.completed,
            skipped: p.skipped,
            exhausted: p.exhausted,
            attempts: p.attempts,
            outcomes: p.outcomes,
        }
    }
}

/// A campaign.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignView {
    /// Id (`cmp_…`).
    pub id: String,
    /// Name.
    pub name: String,
    /// `draft`, `running`, `paused`, `cancelled` or `completed`.
    pub status: String,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Pinned version.
    pub agent_version_id: Option<String>,
    /// Caller id.
    pub from: Option<String>,
    /// Answering-machine detection.
    pub machine_detection: Option<CampaignMachineDetectionDto>,
    /// Calling windows.
    pub calling_windows: Option<BusinessHoursDto>,
    /// Pacing.
    pub pacing: CampaignPacingDto,
    /// Retries.
    pub retry: CampaignRetryDto,
    /// Contacts.
    pub contacts_total: i64,
    /// Progress.
    pub progress: CampaignProgressView,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// RFC 3339, when every contact was finished.
    pub completed_at: Option<String>,
    /// Why the dialer paused the campaign: its calls cannot be placed as it is configured
    /// (the field and what is wrong, e.g. `from: is not one of this tenant's outbound
    /// numbers`); fix it, then resume. Cleared on resume.
    pub paused_reason: Option<String>,
}

fn campaign_view(c: Campaign, p: Progress) -> CampaignView {
    CampaignView {
        id: c.id.into_string(),
        name: c.name,
        status: c.status.as_str().to_owned(),
        agent_key: c.agent_key,
        agent_version_id: c.agent_version_id,
        from: c.from,
        machine_detection: c.machine_detection.map(|m| CampaignMachineDetectionDto {
            action: match m {
                MachineAction::Voicemail => CampaignMachineActionDto::Voicemail,
                MachineAction::Hangup => CampaignMachineActionDto::Hangup,
                MachineAction::Continue => CampaignMachineActionDto::Continue,
            },
        }),
        calling_windows: c.calling_windows.map(|w| w.to_spec().into()),
        pacing: CampaignPacingDto {
            calls_per_minute: c.calls_per_minute,
            max_concurrent: c.max_concurrent,
        },
        retry: CampaignRetryDto {
            no_answer: rule_dto(c.retry.no_answer),
            busy: rule_dto(c.retry.busy),
            machine: rule_dto(c.retry.machine),
            failed: rule_dto(c.retry.failed),
        },
        contacts_total: c.contacts_total,
        progress: p.into(),
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
        completed_at: c.completed_at.map(rfc3339),
        paused_reason: c.paused_reason,
    }
}

/// One attempt of a contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignAttemptView {
    /// 1-based.
    pub attempt: i64,
    /// `claimed` (being placed), `placed` (its call is live) or `settled`.
    pub state: String,
    /// Its call (`call_…`; the call log carries the campaign, contact and attempt in its
    /// metadata).
    pub call_id: Option<String>,
    /// `answered`, `no_answer`, `busy`, `machine`, `failed` or `refused`, once settled.
    pub outcome: Option<String>,
    /// The call's end reason, or the pre-dial rule and reason of a refusal.
    pub detail: Option<String>,
    /// RFC 3339, when it was started.
    pub started_at: String,
    /// RFC 3339, when it was settled.
    pub settled_at: Option<String>,
    /// RFC 3339, when this attempt scheduled the contact's next one.
    pub next_attempt_at: Option<String>,
}

impl From<Attempt> for CampaignAttemptView {
    fn from(a: Attempt) -> Self {
        CampaignAttemptView {
            attempt: a.attempt,
            state: a.state,
            call_id: a.call_id.map(|c| c.into_string()),
            outcome: a.outcome.map(|o| o.as_str().to_owned()),
            detail: a.detail,
            started_at: rfc3339(a.started_at),
            settled_at: a.settled_at.map(rfc3339),
            next_attempt_at: a.next_attempt_at.map(rfc3339),
        }
    }
}

/// A contact with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignContactView {
    /// Id (`cct_…`).
    pub id: String,
    /// Order in the campaign (0-based).
    pub position: i64,
    /// E.164.
    pub phone: String,
    /// Variables.
    #[schema(value_type = Object)]
    pub variables: serde_json::Value,
    /// Your reference.
    pub external_id: Option<String>,
    /// `pending`, `in_progress`, `completed`, `skipped` or `exhausted`.
    pub state: String,
    /// The last attempt's outcome.
    pub last_outcome: Option<String>,
    /// The pre-dial rule that skipped it (`do_not_call`).
    pub skip_rule: Option<String>,
    /// RFC 3339, when the next attempt is due (pending contacts).
    pub next_attempt_at: Option<String>,
    /// Every attempt, in order.
    pub attempts: Vec<CampaignAttemptView>,
}

fn contact_view(c: Contact, attempts: Vec<Attempt>) -> CampaignContactView {
    CampaignContactView {
        id: c.id.into_string(),
        position: c.position,
        phone: c.phone,
        variables: c.variables,
        external_id: c.external_id,
        state: c.state.as_str().to_owned(),
        last_outcome: c.last_outcome.map(|o| o.as_str().to_owned()),
        skip_rule: c.skip_rule,
        next_attempt_at: (c.state == campaign::ContactState::Pending)
            .then(|| rfc3339(c.next_attempt_at)),
        attempts: attempts
            .into_iter()
            .map(CampaignAttemptView::from)
            .collect(),
    }
}

/// Paging of the campaign lists.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CampaignPageParams {
    /// Page size (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u32>,
}

impl From<CampaignError> for ApiError {
    fn from(err: CampaignError) -> Self {
        match err {
            CampaignError::NotFound => ApiError::NotFound("campaign".into()),
            CampaignError::Invalid { field, message } => ApiError::invalid(field, message),
            CampaignError::InvalidTransition(message) => ApiError::Status {
                status: StatusCode::CONFLICT,
                code: "invalid_transition",
                message,
            },
            CampaignError::Store(e) => ApiError::Internal(format!("store: {e:?}")),
        }
    }
}

fn campaign_id(raw: &str) -> Result<CampaignId, ApiError> {
    CampaignId::parse(raw).ok_or_else(|| ApiError::NotFound("campaign".into()))
}

// === handlers ===

/// Creates a campaign with its contacts (in one transaction), `draft` unless `start`.
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "runtime", request_body = CreateCampaignRequest,
    responses((status = 201, body = CampaignView), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse, description = "the key lacks `runtime`"),
              (status = 422, body = ErrorResponse, description = "a field is invalid (named in `field`, e.g. `contacts[3].phone`)")))]
pub async fn create_campaign(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let Request {
        state, auth, body, ..
    } = req;
    let r: CreateCampaignRequest = parse_json(&body)?;
    let retry = r.retry.unwrap_or_default();
    let spec = CampaignSpec {
        name: r.name,
        agent_key: r.agent_key,
        agent_version_id: r.agent_version_id,
        from: r.from,
        contacts: r
            .contacts
            .into_iter()
            .map(|c| ContactSpec {
                phone: c.phone,
                variables: c.variables,
                external_id: c.external_id,
            })
            .collect(),
        calling_windows: r.calling_windows.map(Into::into),
        calls_per_minute: r.pacing.calls_per_minute,
        max_concurrent: r.pacing.max_concurrent,
        retry: RetryPolicy {
            no_answer: rule(retry.no_answer),
            busy: rule(retry.busy),
            machine: rule(retry.machine),
            failed: rule(retry.failed),
        },
        machine_detection: r.machine_detection.map(|m| match m.action {
            CampaignMachineActionDto::Voicemail => MachineAction::Voicemail,
            CampaignMachineActionDto::Hangup => MachineAction::Hangup,
            CampaignMachineActionDto::Continue => MachineAction::Continue,
        }),
        start: r.start.unwrap_or(false),
    };
    let (c, p) = ops::create(&state.store, &state.campaigns, &auth.tenant_id, spec).await?;
    Ok(json(StatusCode::CREATED, &campaign_view(c, p)))
}

/// Lists the tenant's campaigns, newest first, with their progress.
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "runtime", params(CampaignPageParams),
    responses((status = 200, body = Page<CampaignView>), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse)))]
pub async fn list_campaigns(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        raw_query,
        ..
    } = req;
    let p: CampaignPageParams = parse_query(&raw_query)?;
    let paging = Paging::new(p.limit, p.offset)?;
    let page = ops::list(&state.store, &auth.tenant_id, paging.limit, paging.offset).await?;
    Ok(json(
        StatusCode::OK,
        &Page::new(
            page.items.into_iter().map(|(c, p)| campaign_view(c, p)),
            paging,
            page.total,
        ),
    ))
}

/// One campaign with its progress counts.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "runtime",
    params(("id" = String, Path, description = "Campaign id (`cmp_…`)")),
    responses((status = 200, body = CampaignView), (status = 401, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn get_campaign(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let (c, p) = ops::get(&state.store, &auth.tenant_id, &campaign_id(&id)?).await?;
    Ok(json(StatusCode::OK, &campaign_view(c, p)))
}

async fn act(
    req: Request<AuthContext, (String,)>,
    action: CampaignAction,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        ..
    } = req;
    let (c, p) = ops::act(
        &state.store,
        &state.campaigns,
        &auth.tenant_id,
        &campaign_id(&id)?,
        action,
    )
    .await?;
    Ok(json(StatusCode::OK, &campaign_view(c, p)))
}

/// Pauses a running campaign: no new attempts until resumed (live calls finish).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pause", tag = "runtime",
    params(("id" = String, Path, description = "Campaign id (`cmp_…`)")),
    responses((status = 200, body = CampaignView), (status = 401, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "`invalid_transition`: the campaign is not running")))]
pub async fn pause_campaign(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    act(req, CampaignAction::Pause).await
}

/// Starts a draft campaign or resumes a paused one.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/resume", tag = "runtime",
    params(("id" = String, Path, description = "Campaign id (`cmp_…`)")),
    responses((status = 200, body = CampaignView), (status = 401, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "`invalid_transition`: the campaign is not draft or paused")))]
pub async fn resume_campaign(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    act(req, CampaignAction::Resume).await
}

/// Cancels a campaign: no new attempts, ever (live calls finish).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/cancel", tag = "runtime",
    params(("id" = String, Path, description = "Campaign id (`cmp_…`)")),
    responses((status = 200, body = CampaignView), (status = 401, body = ErrorResponse),
              (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "`invalid_transition`: the campaign is completed or cancelled")))]
pub async fn cancel_campaign(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    act(req, CampaignAction::Cancel).await
}

/// A page of a campaign's contacts, in order, each with every attempt.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/contacts", tag = "runtime",
    params(("id" = String, Path, description = "Campaign id (`cmp_…`)"), CampaignPageParams),
    responses((status = 200, body = Page<CampaignContactView>), (status = 400, body = ErrorResponse),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse)))]
pub async fn campaign_contacts(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (id,),
        raw_query,
        ..
    } = req;
    let p: CampaignPageParams = parse_query(&raw_query)?;
    let paging = Paging::new(p.limit, p.offset)?;
    let page = ops::contacts(
        &state.store,
        &auth.tenant_id,
        &campaign_id(&id)?,
        paging.limit,
        paging.offset,
    )
    .await?;
    Ok(json(
        StatusCode::OK,
        &Page::new(
            page.items.into_iter().map(|(c, a)| contact_view(c, a)),
            paging,
            page.total,
        ),
    ))
}
