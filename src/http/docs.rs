//! The OpenAPI documents: `/api-docs/public.json` (runtime, webhooks, ops),
//! `/api-docs/admin.json` and `/api-docs/openapi.json` (everything).

use warp::Reply;
use warp::reply::Response;

use super::ApiError;
use super::mount::Request;
use crate::openapi::{Document, document};

fn serve(which: Document) -> Result<Response, ApiError> {
    Ok(warp::reply::json(&document(which)).into_response())
}

/// The public OpenAPI document: runtime, operator, webhooks and ops routes.
#[utoipa::path(get, path = "/api-docs/public.json", tag = "ops",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn public_doc(_req: Request) -> Result<Response, ApiError> {
    serve(Document::Public)
}

/// The admin OpenAPI document: every route behind the admin key.
#[utoipa::path(get, path = "/api-docs/admin.json", tag = "ops",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn admin_doc(_req: Request) -> Result<Response, ApiError> {
    serve(Document::Admin)
}

/// The full OpenAPI document: every route.
#[utoipa::path(get, path = "/api-docs/openapi.json", tag = "ops",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn full_doc(_req: Request) -> Result<Response, ApiError> {
    serve(Document::Full)
}
