//! Admin API of named admin identities: `GET|POST /api/v1/admin/identities` and
//! `DELETE /api/v1/admin/identities/{identity_id}`. An identity is an admin key with roles
//! (`admin`, `approver`, `auditor`); its key is shown once, at creation, and only its hash is
//! stored; a revocation holds from the next request. Changes need the `admin` role and are
//! audited under the identity that made them.

use actors::governance::AdminRole;
use actors::governance::identities::{self, AdminIdentity, CreatedIdentity, NewIdentity};
use actors::ids::AdminIdentityId;
use actors::tenant::AuditMeta;
use actors::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;

use super::json;
use crate::http::filters::parse_json;
use crate::http::mount::Request;
use crate::http::page::List;
use crate::http::{ApiError, ErrorResponse};

/// An admin role.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AdminRoleDto {
    /// Every admin change.
    Admin,
    /// Approves agent versions.
    Approver,
    /// Reads every admin resource, changes nothing.
    Auditor,
}

impl From<AdminRoleDto> for AdminRole {
    fn from(r: AdminRoleDto) -> Self {
        match r {
            AdminRoleDto::Admin => AdminRole::Admin,
            AdminRoleDto::Approver => AdminRole::Approver,
            AdminRoleDto::Auditor => AdminRole::Auditor,
        }
    }
}

impl From<AdminRole> for AdminRoleDto {
    fn from(r: AdminRole) -> Self {
        match r {
            AdminRole::Admin => AdminRoleDto::Admin,
            AdminRole::Approver => AdminRoleDto::Approver,
            AdminRole::Auditor => AdminRoleDto::Auditor,
        }
    }
}

/// Body of `POST /api/v1/admin/identities`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIdentityRequest {
    /// Name (1–64 of `a-z`, `0-9`, `.`, `_`, `-`; never reused; `root` is the bootstrap key).
    #[schema(
        pattern = "^([a-z0-9][a-z0-9._-]{0,2}|[a-z0-9][a-z0-9._-]{4,63}|[a-qs-z0-9][a-z0-9._-]{3}|r[a-np-z0-9._-][a-z0-9._-]{2}|ro[a-np-z0-9._-][a-z0-9._-]|roo[a-su-z0-9._-])$"
    )]
    pub name: String,
    /// Roles (at least one).
    #[schema(min_items = 1)]
    pub roles: Vec<AdminRoleDto>,
}

/// An admin identity (its key is never shown again after creation).
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityView {
    /// Identifier (`adm_…`).
    pub id: String,
    /// Name (what the audit log records).
    pub name: String,
    /// Roles.
    pub roles: Vec<AdminRoleDto>,
    /// Visible prefix of the key.
    pub prefix: String,
    /// The identity that created it.
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, when revoked.
    pub revoked_at: Option<String>,
}

impl From<AdminIdentity> for IdentityView {
    fn from(i: AdminIdentity) -> Self {
        IdentityView {
            id: i.id.into_string(),
            name: i.name,
            roles: i.roles.into_iter().map(AdminRoleDto::from).collect(),
            prefix: i.prefix,
            created_by: i.created_by,
            created_at: rfc3339(i.created_at),
            revoked_at: i.revoked_at.map(rfc3339),
        }
    }
}

/// A newly created identity, with its key (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedIdentityView {
    /// The identity.
    #[serde(flatten)]
    pub identity: IdentityView,
    /// The key, sent as `x-admin-key`: store it now, it cannot be retrieved again.
    pub key: String,
}

/// Lists the admin identities, newest first (revoked ones included).
#[utoipa::path(get, path = "/api/v1/admin/identities", tag = "admin",
    responses((status = 200, body = List<IdentityView>)))]
pub async fn list_identities(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let all = identities::list(&req.state.store).await?;
    Ok(json(
        StatusCode::OK,
        &List::new(all.into_iter().map(IdentityView::from)),
    ))
}

/// Creates an admin identity; its key is in this response only.
#[utoipa::path(post, path = "/api/v1/admin/identities", tag = "admin",
    request_body = CreateIdentityRequest,
    responses((status = 201, body = CreatedIdentityView), (status = 409, body = ErrorResponse, description = "the name was used before"),
              (status = 422, body = ErrorResponse)))]
pub async fn create_identity(req: Request<AuditMeta>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        body,
        ..
    } = req;
    let r: CreateIdentityRequest = parse_json(&body)?;
    let new = NewIdentity {
        name: r.name,
        roles: r.roles.into_iter().map(AdminRole::from).collect(),
    };
    let CreatedIdentity { identity, secret } = identities::create(&state.store, new, &meta).await?;
    Ok(json(
        StatusCode::CREATED,
        &CreatedIdentityView {
            identity: IdentityView::from(identity),
            key: secret,
        },
    ))
}

/// Revokes an admin identity: the very next request with its key fails.
#[utoipa::path(delete, path = "/api/v1/admin/identities/{identity_id}", tag = "admin",
    params(("identity_id" = String, Path, description = "Identity id (`adm_…`)")),
    responses((status = 200, body = IdentityView), (status = 404, body = ErrorResponse),
              (status = 409, body = ErrorResponse, description = "already revoked")))]
pub async fn revoke_identity(
    req: Request<AuditMeta, (AdminIdentityId,)>,
) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: meta,
        path: (id,),
        ..
    } = req;
    let identity = identities::revoke(&state.store, &id, &meta).await?;
    Ok(json(StatusCode::OK, &IdentityView::from(identity)))
}
