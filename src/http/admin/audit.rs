//! Admin API of the audit log: `GET /api/v1/admin/audit-log`, newest first, filtered by
//! tenant and action.

use actors::ids::TenantId;
use actors::store::{AuditEntry, AuditFilter};
use actors::tenant::{AuditMeta, TenantMsg};
use actors::time::rfc3339;
use ractor::call_t;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use crate::http::filters::Paging;
use crate::http::mount::Request;
use crate::http::page::Page;
use crate::http::{ApiError, ErrorResponse};

/// One audit-log row.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Sequence number.
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Tenant concerned.
    pub tenant_id: Option<String>,
    /// Kind of object.
    pub target_type: String,
    /// Its id.
    pub target_id: String,
    /// Before the change (no secrets).
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// After the change (no secrets).
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    /// Request id of the change.
    pub request_id: Option<String>,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        AuditEntryView {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor,
            action: e.action,
            tenant_id: e.tenant_id.map(TenantId::into_string),
            target_type: e.target_type,
            target_id: e.target_id,
            before: e.before,
            after: e.after,
            request_id: e.request_id,
        }
    }
}

/// Filters of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only rows about this tenant (`ten_…`).
    #[param(pattern = r"^ten_[A-Za-z0-9_-]{1,64}$")]
    pub tenant_id: Option<String>,
    /// Only this action (e.g. `api_key.revoke`).
    pub action: Option<String>,
    /// Page size (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Rows to skip (default 0).
    pub offset: Option<u32>,
}

/// Reads the audit log, newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit-log", tag = "admin", params(AuditParams),
    responses((status = 200, body = Page<AuditEntryView>), (status = 400, body = ErrorResponse)))]
pub async fn audit_log(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let params: AuditParams = req.query()?;
    let state = req.state;
    let paging = Paging::new(params.limit, params.offset)?;
    let tenant_id = match params.tenant_id {
        None => None,
        Some(t) => Some(TenantId::parse(&t).ok_or_else(|| ApiError::BadRequest {
            code: "invalid_query",
            message: "tenant_id is not a tenant id".into(),
            field: Some("tenant_id".into()),
        })?),
    };
    let filter = AuditFilter {
        tenant_id,
        action: params.action,
        limit: paging.limit,
        offset: paging.offset,
    };
    let page = call_t!(
        state.tenant_actor()?,
        TenantMsg::ListAudit,
        state.actor_timeout_ms(),
        filter
    )??;
    Ok(json(
        StatusCode::OK,
        &Page::new(
            page.items.into_iter().map(AuditEntryView::from),
            paging,
            page.total,
        ),
    ))
}
