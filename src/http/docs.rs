//! The OpenAPI documents: `/api-docs/public.json` (runtime, webhooks, ops),
//! `/api-docs/admin.json` and `/api-docs/openapi.json` (everything).

use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::filters::{Caller, at, caller, with_state};
use super::routes::{DOCS_ADMIN, DOCS_FULL, DOCS_PUBLIC};
use super::{ApiError, AppState};
use crate::openapi::{Document, document};

async fn serve_doc(which: Document, state: AppState, caller: Caller) -> Result<Response, ApiError> {
    state.ip_guard.check(caller.ip)?;
    Ok(warp::reply::json(&document(which)).into_response())
}

/// The docs routes.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let s = move || with_state(state.clone());
    let doc = |which: Document| move |state, caller| serve_doc(which, state, caller);
    let public = warp::path!("api-docs" / "public.json")
        .and(warp::get())
        .and(at(&DOCS_PUBLIC))
        .and(s())
        .and(caller())
        .then(doc(Document::Public));
    let admin = warp::path!("api-docs" / "admin.json")
        .and(warp::get())
        .and(at(&DOCS_ADMIN))
        .and(s())
        .and(caller())
        .then(doc(Document::Admin));
    let full = warp::path!("api-docs" / "openapi.json")
        .and(warp::get())
        .and(at(&DOCS_FULL))
        .and(s())
        .and(caller())
        .then(doc(Document::Full));
    public
        .or(admin)
        .unify()
        .or(full)
        .unify()
        .map(|r: Result<Response, ApiError>| r.into_response())
        .boxed()
}
