//! Shared filters and request helpers: state injection, route labelling, the caller's
//! credentials and address, bounded JSON bodies, typed query strings, and authentication.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};

use actors::store::Scope;
use actors::tenant::{AuditMeta, AuthContext, TenantMsg};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use warp::{Filter, Rejection};

use super::context;
use super::routes::RouteSpec;
use super::server::ClientIp;
use super::{ApiError, AppState};

/// Injects the shared state.
pub fn with_state(
    state: AppState,
) -> impl Filter<Extract = (AppState,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Labels the request with `spec`'s template; place it right after the path and method.
pub fn at(spec: &'static RouteSpec) -> impl Filter<Extract = (), Error = Infallible> + Clone {
    warp::any()
        .map(move || context::set_route(spec.path))
        .untuple_one()
}

/// Credentials and address of the caller, read but not yet verified.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Client address.
    pub ip: IpAddr,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// `x-admin-key` header.
    pub admin_key: Option<String>,
}

/// Extracts the [`Caller`].
pub fn caller() -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::ext::optional::<ClientIp>()
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("x-admin-key"))
        .map(|ip: Option<ClientIp>, authorization, admin_key| Caller {
            ip: ip.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0),
            authorization,
            admin_key,
        })
}

/// A JSON body of at most `limit` bytes (413 beyond, 415 for another content type).
/// The body is read incrementally, so a chunked body without `Content-Length` is bounded too.
pub fn json_body(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(
            move |content_type: Option<String>, length: Option<u64>, body| async move {
                if let Some(ct) = content_type
                    && !ct.to_ascii_lowercase().starts_with("application/json")
                {
                    return Err(warp::reject::custom(UnsupportedContentType));
                }
                if length.is_some_and(|l| l > limit) {
                    return Err(warp::reject::custom(BodyTooLarge));
                }
                read_bounded(body, limit).await
            },
        )
}

async fn read_bounded<S, B>(body: S, limit: u64) -> Result<Bytes, Rejection>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    use futures::StreamExt as _;
    let mut body = std::pin::pin!(body);
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| warp::reject::custom(BodyUnreadable))?;
        if (out.len() + chunk.remaining()) as u64 > limit {
            return Err(warp::reject::custom(BodyTooLarge));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// A form body (Twilio webhooks) of at most `limit` bytes.
pub fn form_body(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length: Option<u64>, body| async move {
            if length.is_some_and(|l| l > limit) {
                return Err(warp::reject::custom(BodyTooLarge));
            }
            read_bounded(body, limit).await
        })
}

/// Rejection for a body that is not JSON.
#[derive(Debug)]
pub struct UnsupportedContentType;
impl warp::reject::Reject for UnsupportedContentType {}

/// Rejection for a body over the configured limit.
#[derive(Debug)]
pub struct BodyTooLarge;
impl warp::reject::Reject for BodyTooLarge {}

/// Rejection for a body that could not be read (connection error).
#[derive(Debug)]
pub struct BodyUnreadable;
impl warp::reject::Reject for BodyUnreadable {}

/// The raw query string (empty when absent).
pub fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

fn field_of(path: &serde_path_to_error::Path) -> Option<String> {
    let p = path.to_string();
    (p != "." && !p.is_empty()).then_some(p)
}

/// Parses a JSON body into `T`, naming the field at fault on error (400).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest {
            code: "invalid_body",
            message: "a JSON body is required".into(),
            field: None,
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = field_of(err.path());
        let inner = err.into_inner();
        let unknown = inner.to_string();
        // serde names an unknown field in its message, not in the path.
        let field = field.or_else(|| {
            unknown
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
        });
        let code = if inner.is_syntax() || inner.is_eof() {
            "invalid_json"
        } else {
            "invalid_body"
        };
        ApiError::BadRequest {
            code,
            message: inner.to_string(),
            field,
        }
    })
}

/// Parses a query string into `T`, naming the parameter at fault on error (400).
pub fn parse_query<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(raw));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = field_of(err.path());
        let message = err.into_inner().to_string();
        let field = field.or_else(|| {
            message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
        });
        ApiError::BadRequest {
            code: "invalid_query",
            message,
            field,
        }
    })
}

fn form_urlencoded_parse(raw: &str) -> url::form_urlencoded::Parse<'_> {
    url::form_urlencoded::parse(raw.as_bytes())
}

/// Paging parameters shared by list endpoints.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    /// Page size (1–200, default 50).
    pub limit: u32,
    /// Rows skipped.
    pub offset: u32,
}

impl Paging {
    /// Validates `limit`/`offset`.
    pub fn new(limit: Option<u32>, offset: Option<u32>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(ApiError::BadRequest {
                code: "invalid_query",
                message: "limit must be between 1 and 200".into(),
                field: Some("limit".into()),
            });
        }
        Ok(Self {
            limit,
            offset: offset.unwrap_or(0),
        })
    }
}

impl AppState {
    /// The tenant actor, or 503 while it is down.
    pub fn tenant_actor(&self) -> Result<ractor::ActorRef<TenantMsg>, ApiError> {
        self.actors.tenant.get().ok_or_else(|| {
            ApiError::Unavailable("tenant service is restarting; retry shortly".into())
        })
    }

    /// Verifies the admin key. Without a configured key every admin path is a 404.
    pub fn admin(&self, caller: &Caller) -> Result<AuditMeta, ApiError> {
        let Some(expected) = &self.config.admin_api_key else {
            return Err(ApiError::RouteNotFound);
        };
        self.ip_guard.check_blocked(caller.ip)?;
        match &caller.admin_key {
            Some(presented) if expected.matches(presented) => Ok(AuditMeta {
                actor: String::from("admin"),
                request_id: context::request_id(),
            }),
            _ => {
                self.ip_guard.record_failure(caller.ip);
                Err(ApiError::Unauthorized(
                    "a valid x-admin-key header is required".into(),
                ))
            }
        }
    }

    /// Authenticates a tenant key and checks `scope` (when given).
    pub async fn tenant(
        &self,
        caller: &Caller,
        scope: Option<Scope>,
    ) -> Result<AuthContext, ApiError> {
        self.ip_guard.check_blocked(caller.ip)?;
        let secret = caller
            .authorization
            .as_deref()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(secret) = secret else {
            self.ip_guard.record_failure(caller.ip);
            return Err(ApiError::Unauthorized(
                "an Authorization: Bearer <api key> header is required".into(),
            ));
        };
        // The shared directory, not the tenant actor's mailbox: authentication never waits
        // behind an admin request.
        let result = self.actors.tenants.authenticate(secret).await;
        let auth = match result {
            Ok(auth) => auth,
            Err(err) => {
                if matches!(err, actors::tenant::AuthError::InvalidKey) {
                    self.ip_guard.record_failure(caller.ip);
                }
                return Err(err.into());
            }
        };
        if let Some(scope) = scope
            && !auth.has(scope)
        {
            return Err(ApiError::Forbidden {
                code: "insufficient_scope",
                message: format!("this api key lacks the `{}` scope", scope.as_str()),
            });
        }
        Ok(auth)
    }
}

/// Mounts one endpoint: `path` and `method`, the route label, the state and the caller, any
/// further filters (query string, body), then the handler, whose result becomes the
/// response. The handler takes the path's parameters, then `AppState`, `Caller` and the
/// extras, in that order.
macro_rules! endpoint {
    ($state:expr, $path:expr, $method:ident, $spec:expr, $handler:expr $(, $extra:expr)* $(,)?) => {{
        use warp::Filter as _;
        $path
            .and(warp::$method())
            .and($crate::http::filters::at(&$spec))
            .and($crate::http::filters::with_state($state.clone()))
            .and($crate::http::filters::caller())
            $(.and($extra))*
            .then($handler)
            .map(|r: Result<warp::reply::Response, $crate::http::ApiError>| {
                warp::Reply::into_response(r)
            })
    }};
}
pub(crate) use endpoint;

/// Combines endpoints into one boxed filter (the first that matches answers).
macro_rules! any_of {
    ($first:expr $(, $rest:expr)* $(,)?) => {{
        use warp::Filter as _;
        $first $(.or($rest).unify())* .boxed()
    }};
}
pub(crate) use any_of;

/// Parses an optional JSON body: an empty body is `T::default()`.
pub fn parse_optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(body)
    }
}
