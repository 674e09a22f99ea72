//! The one way a route is mounted.
//!
//! A handler's `#[utoipa::path(...)]` attribute is the single place its method, path and
//! documentation are written. [`mount!`](crate::mount!) takes the handler and its
//! [`Guard`] (how the caller authenticates) and builds a [`Mount`]: the method and path
//! template read from utoipa's generated `__path_<fn>` type, the request body kind read from
//! its documented request body, a type-erased handle that reads the body (bounded), applies
//! the authentication, extracts the typed path parameters and calls the handler, and the
//! operation for the OpenAPI documents (completed by [`crate::openapi`] with what the guard
//! and the body imply). [`dispatch`] is the server's one filter: it matches the path
//! against the templates exactly, labels the request with the matched one (metrics) and
//! runs that route's handle.
//!
//! The route table ([`super::routes::table`]) is a list of mounts; the server's filter, the
//! metrics labels and the three documents are all derived from it.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn};
use utoipa::openapi::schema::Schema;
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::body::{self, BodyStream};
use super::context;
use super::filters::{Caller, parse_json, parse_optional_json, parse_query, raw_query};
use super::guard::{Auth, Credential, Guard, Raw};
use super::server::ClientIp;
use super::template::Template;
use super::upgrade::Upgrade;
use super::{ApiError, AppState};

// === Request ===

/// What a handler receives: the state, the caller, what its guard established (`A`), the
/// typed path parameters (`P`), the raw query string, the headers and the body (read and
/// bounded when the route documents one, empty otherwise).
pub struct Request<A = (), P = ()> {
    /// Shared state.
    pub state: AppState,
    /// Credentials and address of the caller.
    pub caller: Caller,
    /// What the guard established.
    pub auth: A,
    /// Path parameters, in template order.
    pub path: P,
    /// The raw query string (empty when absent).
    pub raw_query: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl<A, P> Request<A, P> {
    /// The query string parsed into `T` (400 `invalid_query` naming the parameter).
    pub fn query<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_query(&self.raw_query)
    }

    /// The JSON body parsed into `T` (400 naming the field).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.body)
    }

    /// The JSON body parsed into `T`, or `T::default()` when the body is empty.
    pub fn optional_json<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        parse_optional_json(&self.body)
    }

    /// A header as text: `None` when absent, 400 `invalid_header` when not visible ASCII.
    pub fn text_header(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(str::to_owned)
                    .map_err(|_| ApiError::BadRequest {
                        code: "invalid_header",
                        message: format!("{name} must be visible ASCII"),
                        field: Some(name.to_owned()),
                    })
            })
            .transpose()
    }
}

// === path parameters ===

/// One path parameter parsed from its segment (a malformed id is a 404 naming the thing).
pub trait PathParam: Sized {
    /// Parses a (non-empty) segment.
    fn from_segment(segment: &str) -> Result<Self, ApiError>;
}

impl PathParam for String {
    fn from_segment(segment: &str) -> Result<Self, ApiError> {
        Ok(segment.to_owned())
    }
}

macro_rules! id_params {
    ($($id:ty => $what:literal),* $(,)?) => {
        $(
            impl PathParam for $id {
                fn from_segment(segment: &str) -> Result<Self, ApiError> {
                    <$id>::parse(segment).ok_or_else(|| ApiError::NotFound($what.into()))
                }
            }
        )*
    };
}

id_params!(
    actors::ids::TenantId => "tenant",
    actors::ids::ApiKeyId => "api key",
    actors::ids::AgentId => "agent",
    actors::ids::AgentVersionId => "agent version",
    actors::ids::DeliveryId => "webhook delivery",
    actors::ids::EvaluationId => "evaluation",
    actors::ids::SessionId => "voice session",
    actors::ids::AdminIdentityId => "admin identity",
);

/// The path parameters of a route, in template order.
pub trait FromPath: Sized + Send + 'static {
    /// How many parameters.
    const COUNT: usize;
    /// Parses the matched segments (exactly [`Self::COUNT`] of them).
    fn from_path(segments: &[String]) -> Result<Self, ApiError>;
}

fn segment(segments: &[String], i: usize) -> Result<&str, ApiError> {
    segments
        .get(i)
        .map(String::as_str)
        .ok_or_else(|| ApiError::Internal("route parameters do not match the handler".into()))
}

impl FromPath for () {
    const COUNT: usize = 0;
    fn from_path(_: &[String]) -> Result<Self, ApiError> {
        Ok(())
    }
}

impl<T: PathParam + Send + 'static> FromPath for (T,) {
    const COUNT: usize = 1;
    fn from_path(segments: &[String]) -> Result<Self, ApiError> {
        Ok((T::from_segment(segment(segments, 0)?)?,))
    }
}

impl<T: PathParam + Send + 'static, U: PathParam + Send + 'static> FromPath for (T, U) {
    const COUNT: usize = 2;
    fn from_path(segments: &[String]) -> Result<Self, ApiError> {
        Ok((
            T::from_segment(segment(segments, 0)?)?,
            U::from_segment(segment(segments, 1)?)?,
        ))
    }
}

// === Mount ===

/// The body a route reads, from its documented request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// None (the body is not read).
    None,
    /// JSON (415 for another content type, 413 beyond the limit).
    Json,
    /// A form (Twilio webhooks; 413 beyond the limit).
    Form,
}

type Schemas = Vec<(String, RefOr<Schema>)>;

/// What the server extracted from a request before choosing its route.
pub struct Parts {
    /// Path as received.
    pub path: FullPath,
    /// The route's path parameters, in template order.
    pub params: Vec<String>,
    /// Client address.
    pub ip: Option<ClientIp>,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw query string (empty when absent).
    pub query: String,
    /// The body, not yet read.
    pub body: BodyStream,
    /// The websocket upgrade, when the request is one.
    pub ws: Option<Upgrade>,
}

type Handle = dyn Fn(Arc<Route>, AppState, Parts) -> BoxFuture<'static, Response> + Send + Sync;

/// What is known of a mounted route without the handler.
pub struct Route {
    method: HttpMethod,
    http: warp::http::Method,
    methods: usize,
    path: &'static str,
    template: Template,
    auth: Auth,
    body: BodyKind,
    handler_params: usize,
    operation: fn() -> Operation,
    tags: fn() -> Vec<&'static str>,
    schemas: fn(&mut Schemas),
}

/// One mounted route: its declaration and its type-erased handler.
pub struct Mount {
    route: Arc<Route>,
    handle: Box<Handle>,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("method", &self.method())
            .field("path", &self.route.path)
            .field("auth", &self.route.auth)
            .field("body", &self.route.body)
            .finish()
    }
}

fn route_of<D>(auth: Auth, handler_params: usize) -> Route
where
    D: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
{
    let methods = D::methods();
    let method = methods.first().cloned().unwrap_or(HttpMethod::Get);
    // One string per route, leaked once when the table is built: the template labels every
    // request's metrics for the life of the process.
    let path: &'static str = Box::leak(D::path().into_boxed_str());
    let body = match D::operation().request_body {
        None => BodyKind::None,
        Some(b) if b.content.keys().any(|ct| ct.contains("form-urlencoded")) => BodyKind::Form,
        Some(_) => BodyKind::Json,
    };
    let http = http_method(&method);
    Route {
        auth: auth.for_method(&http),
        http,
        method,
        methods: methods.len(),
        path,
        template: Template::new(path),
        body,
        handler_params,
        operation: D::operation,
        tags: <D as utoipa::__dev::Tags<'static>>::tags,
        schemas: D::schemas,
    }
}

impl Mount {
    /// A route whose handler takes a [`Request`]; `D` is the handler's `__path_<fn>` type.
    pub fn endpoint<D, A, P, H, F>(guard: Guard<A>, handler: H) -> Self
    where
        D: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
        A: Credential,
        P: FromPath,
        H: Fn(Request<A, P>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<Response, ApiError>> + Send + 'static,
    {
        let route = Arc::new(route_of::<D>(guard.auth(), P::COUNT));
        let handle = move |route: Arc<Route>,
                           state: AppState,
                           parts: Parts|
              -> BoxFuture<'static, Response> {
            Box::pin(serve::<A, P, H, F>(route, state, parts, handler.clone()))
        };
        Self {
            route,
            handle: Box::new(handle),
        }
    }

    /// The media websocket: `handler` gets the state, the route template, the upgrade's
    /// `X-Twilio-Signature`, the path as received and the upgrade (400 `invalid_upgrade`
    /// when the request is not one).
    pub fn websocket<D>(handler: fn(AppState, &'static str, WsUpgrade) -> Response) -> Self
    where
        D: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
    {
        let route = Arc::new(route_of::<D>(Auth::StreamToken, 0));
        let handle = move |route: Arc<Route>,
                           state: AppState,
                           parts: Parts|
              -> BoxFuture<'static, Response> {
            let response = match parts.ws {
                Some(ws) => {
                    let signature = parts
                        .headers
                        .get("x-twilio-signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    handler(
                        state,
                        route.path,
                        WsUpgrade {
                            ip: parts.ip.map(|ip| ip.0),
                            signature,
                            path: parts.path.as_str().to_owned(),
                            ws,
                        },
                    )
                }
                None => ApiError::BadRequest {
                    code: "invalid_upgrade",
                    message: "a websocket upgrade is required".into(),
                    field: None,
                }
                .into_response(),
            };
            Box::pin(std::future::ready(response))
        };
        Self {
            route,
            handle: Box::new(handle),
        }
    }

    /// HTTP method.
    pub fn method(&self) -> &'static str {
        method_name(&self.route.method)
    }

    /// How many methods the handler's attribute declares (always 1 in a valid table).
    pub fn declared_methods(&self) -> usize {
        self.route.methods
    }

    /// Path template as in the OpenAPI documents.
    pub fn path(&self) -> &'static str {
        self.route.path
    }

    /// The path template, parsed.
    pub fn template(&self) -> &Template {
        &self.route.template
    }

    /// How the route authenticates.
    pub fn auth(&self) -> Auth {
        self.route.auth
    }

    /// The body it reads.
    pub fn body(&self) -> BodyKind {
        self.route.body
    }

    /// How many path parameters the handler takes (equal to the template's in a valid table).
    pub fn handler_params(&self) -> usize {
        self.route.handler_params
    }

    /// The utoipa method.
    pub fn http_method(&self) -> HttpMethod {
        self.route.method.clone()
    }

    /// The operation as the handler's attribute documents it, with its tags.
    pub fn operation(&self) -> Operation {
        let mut operation = (self.route.operation)();
        let tags = (self.route.tags)();
        if !tags.is_empty() {
            operation
                .tags
                .get_or_insert_with(Vec::new)
                .extend(tags.into_iter().map(str::to_owned));
        }
        operation
    }

    /// Whether the operation documents query parameters.
    pub fn has_query(&self) -> bool {
        self.operation()
            .parameters
            .iter()
            .flatten()
            .any(|p| p.parameter_in == ParameterIn::Query)
    }

    /// Adds the schemas the operation refers to.
    pub fn schemas(&self, out: &mut Schemas) {
        (self.route.schemas)(out)
    }
}

fn method_name(m: &HttpMethod) -> &'static str {
    match m {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Head => "HEAD",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Trace => "TRACE",
    }
}

fn http_method(m: &HttpMethod) -> warp::http::Method {
    use warp::http::Method;
    match m {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// A websocket upgrade as its route's handler gets it.
pub struct WsUpgrade {
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// The upgrade's `X-Twilio-Signature`.
    pub signature: Option<String>,
    /// The path as received.
    pub path: String,
    /// The upgrade.
    pub ws: Upgrade,
}

/// The server's one filter over `table`: extracts the request's parts, finds the route whose
/// template matches the path exactly (the most specific: fewest parameters) and whose
/// method matches (404 `route_not_found` otherwise, 405 with `Allow` when only the method
/// differs), labels the request with its template and
/// runs it. One lookup and one boxed future per request, whatever the table's size.
pub fn dispatch(state: AppState, table: &'static [Mount]) -> BoxedFilter<(Response,)> {
    warp::path::full()
        .and(warp::method())
        .and(warp::ext::optional::<ClientIp>())
        .and(warp::header::headers_cloned())
        .and(raw_query())
        .and(body::stream())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .then(
            move |path: FullPath,
                  method: warp::http::Method,
                  ip: Option<ClientIp>,
                  headers: HeaderMap,
                  query: String,
                  body: BodyStream,
                  on_upgrade: Option<hyper::upgrade::OnUpgrade>| {
                // Only the most specific templates the path matches count (the fewest
                // parameters: `/dnc/import` is not `/dnc/{number}`); their methods make
                // `Allow` on a 405.
                let mut fewest = usize::MAX;
                let mut allow: Vec<&'static str> = Vec::new();
                let mut found = None;
                for mount in table {
                    let Some(params) = mount.route.template.matches(path.as_str()) else {
                        continue;
                    };
                    let n = mount.route.template.params();
                    if n > fewest {
                        continue;
                    }
                    if n < fewest {
                        fewest = n;
                        allow.clear();
                        found = None;
                    }
                    allow.push(method_name(&mount.route.method));
                    if found.is_none() && mount.route.http == method {
                        found = Some((mount, params));
                    }
                }
                match found {
                    Some((mount, params)) => {
                        context::set_route(mount.route.path);
                        let ws = Upgrade::of(&method, &headers, on_upgrade);
                        let parts = Parts {
                            path,
                            params,
                            ip,
                            headers,
                            query,
                            body,
                            ws,
                        };
                        (mount.handle)(mount.route.clone(), state.clone(), parts)
                    }
                    None if allow.is_empty() => {
                        Box::pin(std::future::ready(ApiError::RouteNotFound.into_response()))
                    }
                    None => Box::pin(std::future::ready(method_not_allowed(&allow))),
                }
            },
        )
        .boxed()
}

/// 405 with `Allow` naming the methods the path supports (RFC 9110 §15.5.6).
fn method_not_allowed(allow: &[&'static str]) -> Response {
    let mut methods = allow.to_vec();
    methods.sort_unstable();
    methods.dedup();
    let mut response = ApiError::MethodNotAllowed.into_response();
    if let Ok(value) = warp::http::HeaderValue::from_str(&methods.join(", ")) {
        response
            .headers_mut()
            .insert(warp::http::header::ALLOW, value);
    }
    response
}

async fn serve<A, P, H, F>(route: Arc<Route>, state: AppState, parts: Parts, handler: H) -> Response
where
    A: Credential,
    P: FromPath,
    H: Fn(Request<A, P>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response, ApiError>> + Send + 'static,
{
    let limit = state.config.max_body_bytes;
    let Parts {
        path,
        params,
        ip,
        headers,
        query,
        body: stream,
        ..
    } = parts;
    let body = match route.body {
        BodyKind::None => Ok(Bytes::new()),
        BodyKind::Json => body::json(&headers, stream, limit).await,
        BodyKind::Form => body::form(&headers, stream, limit).await,
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let caller = Caller::from_headers(ip, &headers);
    let raw = Raw {
        path: path.as_str(),
        query: &query,
        headers: &headers,
        body: &body,
    };
    let credential = match A::check(route.auth, route.path, &state, &caller, raw).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let path = match P::from_path(&params) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let request = Request {
        state,
        caller,
        auth: credential,
        path,
        raw_query: query,
        headers,
        body,
    };
    handler(request).await.into_response()
}

/// Mounts a handler: `mount!(calls::hangup, tenant(&[Scope::Operator, Scope::Runtime]))`
/// (the handler's `__path_<fn>` type is found next to it), or
/// `mount!(websocket media::media_stream)`.
#[macro_export]
macro_rules! mount {
    (websocket $($path:tt)*) => {
        $crate::mount!(@ws [] $($path)*)
    };
    (@ws [$($prefix:ident)*] $last:ident) => {
        ::pastey::paste! {
            $crate::http::mount::Mount::websocket::<$($prefix ::)* [<__path_ $last>]>($($prefix ::)* $last)
        }
    };
    (@ws [$($prefix:ident)*] $next:ident :: $($rest:tt)*) => {
        $crate::mount!(@ws [$($prefix)* $next] $($rest)*)
    };
    (@go [$($prefix:ident)*] $last:ident, $guard:expr) => {
        ::pastey::paste! {
            $crate::http::mount::Mount::endpoint::<$($prefix ::)* [<__path_ $last>], _, _, _, _>(
                $guard,
                $($prefix ::)* $last,
            )
        }
    };
    (@go [$($prefix:ident)*] $next:ident :: $($rest:tt)*) => {
        $crate::mount!(@go [$($prefix)* $next] $($rest)*)
    };
    ($first:ident $($rest:tt)*) => {
        $crate::mount!(@go [] $first $($rest)*)
    };
}
