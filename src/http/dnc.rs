//! The do-not-call list of the tenant (tenant key): `GET|POST /api/v1/dnc`,
//! `POST /api/v1/dnc/import` (bulk) and `DELETE /api/v1/dnc/{number}`. Numbers are E.164
//! (422 naming the field, `numbers[3]` in an import); the list also grows by the `opt_out`
//! built-in during calls. Every outbound call to a listed number is refused before anything
//! is dialed. Changes are audited under the key that made them.

use actors::domain::E164;
use actors::governance::dnc::{self, DncEntry};
use actors::tenant::AuthContext;
use actors::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::http::StatusCode;
use warp::reply::Response;

use super::admin::json;
use super::fields;
use super::filters::{Paging, parse_json, parse_query};
use super::mount::Request;
use super::page::Page;
use super::queues::key_audit;
use super::{ApiError, ErrorResponse};

/// A listed number.
#[derive(Debug, Serialize, ToSchema)]
pub struct DncView {
    /// E.164.
    pub number: String,
    /// `api`, `import` or `opt_out`.
    pub source: String,
    /// Why.
    pub reason: Option<String>,
    /// The call in which the caller opted out (`source` `opt_out`).
    pub call_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

impl From<DncEntry> for DncView {
    fn from(e: DncEntry) -> Self {
        DncView {
            number: e.number,
            source: e.source.as_str().to_owned(),
            reason: e.reason,
            call_id: e.call_id.map(|c| c.into_string()),
            created_at: rfc3339(e.created_at),
        }
    }
}

/// Body of `POST /api/v1/dnc`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDncRequest {
    /// E.164 number.
    #[schema(format = "e164")]
    pub number: String,
    /// Why (at most 500 characters).
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// Body of `POST /api/v1/dnc/import`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportDncRequest {
    /// E.164 numbers (1–1000; duplicates and listed numbers are skipped).
    #[schema(value_type = Vec<super::fields::PhoneNumber>, min_items = 1, max_items = 1000)]
    pub numbers: Vec<String>,
    /// Why, for every number (at most 500 characters).
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportDncResponse {
    /// Numbers newly listed.
    pub added: usize,
    /// Numbers listed already (unchanged).
    pub already_listed: usize,
}

/// Paging of the list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DncParams {
    /// Page size (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Rows to skip (default 0).
    pub offset: Option<u32>,
}

/// The tenant's do-not-call list, newest first.
#[utoipa::path(get, path = "/api/v1/dnc", tag = "runtime", params(DncParams),
    responses((status = 200, body = Page<DncView>), (status = 400, body = ErrorResponse)))]
pub async fn list_dnc(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let p: DncParams = parse_query(&req.raw_query)?;
    let paging = Paging::new(p.limit, p.offset)?;
    let page = dnc::list(
        &req.state.store,
        &req.auth.tenant_id,
        paging.limit,
        paging.offset,
    )
    .await?;
    Ok(json(
        StatusCode::OK,
        &Page::new(
            page.items.into_iter().map(DncView::from),
            paging,
            page.total,
        ),
    ))
}

/// Lists a number: 201 when new, 200 when it was listed already (its first entry kept).
#[utoipa::path(post, path = "/api/v1/dnc", tag = "runtime", request_body = AddDncRequest,
    responses((status = 201, body = DncView, description = "listed"),
              (status = 200, body = DncView, description = "listed already"),
              (status = 422, body = ErrorResponse)))]
pub async fn add_dnc(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let r: AddDncRequest = parse_json(&req.body)?;
    let number = fields::e164("number", &r.number)?;
    let meta = key_audit(&req.auth);
    let (entry, added) = dnc::add(
        &req.state.store,
        &req.auth.tenant_id,
        &number,
        r.reason,
        &meta,
    )
    .await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &DncView::from(entry)))
}

/// Lists many numbers at once; nothing is listed when any number is invalid.
#[utoipa::path(post, path = "/api/v1/dnc/import", tag = "runtime", request_body = ImportDncRequest,
    responses((status = 200, body = ImportDncResponse), (status = 422, body = ErrorResponse)))]
pub async fn import_dnc(req: Request<AuthContext>) -> Result<Response, ApiError> {
    let r: ImportDncRequest = parse_json(&req.body)?;
    if r.numbers.is_empty() || r.numbers.len() > dnc::MAX_IMPORT {
        return Err(ApiError::invalid(
            "numbers",
            format!("must hold 1 to {} numbers", dnc::MAX_IMPORT),
        ));
    }
    let numbers = r
        .numbers
        .iter()
        .enumerate()
        .map(|(i, n)| fields::e164(&format!("numbers[{i}]"), n))
        .collect::<Result<Vec<E164>, ApiError>>()?;
    let meta = key_audit(&req.auth);
    let done = dnc::import(
        &req.state.store,
        &req.auth.tenant_id,
        &numbers,
        r.reason,
        &meta,
    )
    .await?;
    Ok(json(
        StatusCode::OK,
        &ImportDncResponse {
            added: done.added,
            already_listed: done.already_listed,
        },
    ))
}

/// Removes a number from the list (`+` may be sent as is or as `%2B`).
#[utoipa::path(delete, path = "/api/v1/dnc/{number}", tag = "runtime",
    params(("number" = String, Path, format = "e164", description = "E.164 number")),
    responses((status = 200, body = DncView), (status = 404, body = ErrorResponse),
              (status = 422, body = ErrorResponse)))]
pub async fn remove_dnc(req: Request<AuthContext, (String,)>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth,
        path: (raw,),
        ..
    } = req;
    let text = match raw.get(..3) {
        Some(p) if p.eq_ignore_ascii_case("%2b") => format!("+{}", &raw[3..]),
        _ => raw,
    };
    let number = fields::e164("number", &text)?;
    let meta = key_audit(&auth);
    let entry = dnc::remove(&state.store, &auth.tenant_id, &number, &meta).await?;
    Ok(json(StatusCode::OK, &DncView::from(entry)))
}
