//! Shared filters and request helpers: the caller's credentials and address, bounded JSON
//! and form bodies, typed query strings, paging, and admin and tenant authentication.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};

use actors::governance::{AdminRole, ROOT, identities};
use actors::store::Scope;
use actors::tenant::{AuditMeta, AuthContext, TenantMsg};
use serde::de::DeserializeOwned;
use warp::Filter;

use super::context;
use super::server::ClientIp;
use super::{ApiError, AppState};

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

impl Caller {
    /// The caller of a request from its client address and headers.
    pub fn from_headers(ip: Option<ClientIp>, headers: &warp::http::HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Caller {
            ip: ip.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0),
            authorization: text("authorization"),
            admin_key: text("x-admin-key"),
        }
    }
}

/// The raw query string (empty when absent).
pub fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

fn field_of(path: &serde_path_to_error::Path) -> Option<String> {
    let p = path.to_string();
    (p != "." && !p.is_empty()).then_some(p)
}

/// Parses a JSON body into `T`, naming the field at fault on error (400).
///
/// The body must be a JSON object (every request body is one; serde alone would also read a
/// struct from an array). A number with a zero fraction (`5.0`) is an integer, as JSON
/// Schema has it, so it is read into integer fields like `5`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest {
            code: "invalid_body",
            message: "a JSON body is required".into(),
            field: None,
        });
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|err| ApiError::BadRequest {
            code: "invalid_json",
            message: err.to_string(),
            field: None,
        })?;
    if !value.is_object() {
        return Err(ApiError::BadRequest {
            code: "invalid_body",
            message: "the body must be a JSON object".into(),
            field: None,
        });
    }
    integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let field = field_of(err.path());
        let inner = err.into_inner();
        let unknown = inner.to_string();
        // serde names an unknown or missing field in its message, not in the path.
        let field = field.or_else(|| {
            unknown
                .strip_prefix("unknown field `")
                .or_else(|| unknown.strip_prefix("missing field `"))
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
        });
        ApiError::BadRequest {
            code: "invalid_body",
            message: inner.to_string(),
            field,
        }
    })
}

/// Rewrites every number with a zero fraction that fits an `i64` as that integer.
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f >= i64::MIN as f64
                && f < i64::MAX as f64
            {
                // Exact: `f` is integral and within range.
                let i = f as i64;
                *value = Value::from(i);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
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
                .or_else(|| message.strip_prefix("missing field `"))
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

/// Largest `offset` accepted (the int32 the API documents declare).
pub const MAX_OFFSET: u32 = i32::MAX as u32;

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
        let offset = offset.unwrap_or(0);
        // The documents declare `offset` an int32, as generated clients hold it.
        if offset > MAX_OFFSET {
            return Err(ApiError::BadRequest {
                code: "invalid_query",
                message: format!("offset must be between 0 and {MAX_OFFSET}"),
                field: Some("offset".into()),
            });
        }
        Ok(Self { limit, offset })
    }
}

impl AppState {
    /// The tenant actor, or 503 while it is down.
    pub fn tenant_actor(&self) -> Result<actors::singleton::Mailbox<TenantMsg>, ApiError> {
        self.actors.tenant.get().ok_or_else(|| {
            ApiError::Unavailable("tenant service is restarting; retry shortly".into())
        })
    }

    /// Verifies the admin key — the bootstrap `ADMIN_API_KEY` (identity `root`, every role)
    /// or a named identity's key, read from the store on every request so a revocation holds
    /// from the next one — and that it holds one of `roles` (403 `insufficient_role` naming
    /// the role needed and the roles held). Without a configured bootstrap key every admin
    /// path is a 404.
    pub async fn admin(
        &self,
        caller: &Caller,
        roles: &'static [AdminRole],
    ) -> Result<AuditMeta, ApiError> {
        let Some(expected) = &self.config.admin_api_key else {
            return Err(ApiError::RouteNotFound);
        };
        self.ip_guard.check_blocked(caller.ip)?;
        let unauthorized = || {
            self.ip_guard.record_failure(caller.ip);
            ApiError::Unauthorized("a valid x-admin-key header is required".into())
        };
        let Some(presented) = &caller.admin_key else {
            return Err(unauthorized());
        };
        let (name, held) = if expected.matches(presented) {
            (String::from(ROOT), AdminRole::ALL.to_vec())
        } else {
            match identities::authenticate(&self.store, presented).await {
                Ok(Some(identity)) => (identity.name, identity.roles),
                Ok(None) => return Err(unauthorized()),
                Err(e) => return Err(ApiError::Internal(format!("admin identity: {e:?}"))),
            }
        };
        if !roles.iter().any(|r| held.contains(r)) {
            return Err(ApiError::Forbidden {
                code: "insufficient_role",
                message: format!(
                    "this request needs the {} role; identity {name} holds {}",
                    AdminRole::describe(roles),
                    held.iter()
                        .map(|r| format!("`{}`", r.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Ok(AuditMeta {
            actor: name,
            request_id: context::request_id(),
        })
    }

    /// Authenticates a tenant key holding any of `scopes` (none listed: any key).
    pub async fn tenant_any(
        &self,
        caller: &Caller,
        scopes: &'static [Scope],
    ) -> Result<AuthContext, ApiError> {
        let auth = self.tenant(caller, None).await?;
        if scopes.is_empty() || scopes.iter().any(|s| auth.has(*s)) {
            return Ok(auth);
        }
        let message = match scopes {
            [one] => format!("this api key lacks the `{}` scope", one.as_str()),
            many => {
                let names: Vec<String> = many.iter().map(|s| format!("`{}`", s.as_str())).collect();
                format!("this api key needs the {} scope", names.join(" or "))
            }
        };
        Err(ApiError::Forbidden {
            code: "insufficient_scope",
            message,
        })
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

/// Parses an optional JSON body: an empty body, or `null`, is `T::default()`.
pub fn parse_optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    // No body, or `null` (the documents show an optional body as nullable).
    let text = body.trim_ascii();
    if text.is_empty() || text == b"null" {
        Ok(T::default())
    } else {
        parse_json(body)
    }
}
