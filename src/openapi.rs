//! The OpenAPI 3.1 documents, derived from the route table ([`crate::http::routes::table`]).
//!
//! Each mounted route contributes its handler's `#[utoipa::path]` operation, completed with
//! what its guard and its body imply: the security requirement (the tenant key's scopes as
//! alternatives), and the 400/401/403/404/413/415/429/503 answers of authentication, body
//! and query parsing, so no operation omits them. Membership follows the guard: routes
//! behind the admin key make the admin document, every other route the public one, and the
//! full document holds both. Request fields that name a shared rule by format (E.164, texts,
//! times, time zones) get the rule itself ([`formats`]).

pub mod formats;

use std::collections::BTreeSet;

use actors::governance::AdminRole;
use utoipa::openapi::path::{Operation, Paths};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr,
    ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use crate::http::error::{ErrorObject, ErrorResponse};
use crate::http::guard::Auth;
use crate::http::mount::{BodyKind, Mount};
use crate::http::routes::table;

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// Every route not behind the admin key: runtime, operator, webhooks, ops, documents.
    Public,
    /// Every route behind the admin key.
    Admin,
    /// Everything.
    Full,
}

impl Document {
    /// Whether a route with guard `auth` belongs to this document.
    pub fn includes(self, auth: Auth) -> bool {
        match self {
            Document::Public => !auth.is_admin(),
            Document::Admin => auth.is_admin(),
            Document::Full => true,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Document::Public => "StateSet Voice API",
            Document::Admin => "StateSet Voice Admin API",
            Document::Full => "StateSet Voice API (full)",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Document::Public => {
                "Runtime API for AI phone agents: calls, records and Twilio webhooks."
            }
            Document::Admin => {
                "Tenants, keys, credentials, governance and diagnostics (x-admin-key)."
            }
            Document::Full => "Every route of StateSet Voice: the runtime and the admin API.",
        }
    }
}

/// Tags and their descriptions (a document lists the ones its operations use).
const TAGS: [(&str, &str); 5] = [
    ("runtime", "Tenant API (Bearer key)"),
    (
        "operator",
        "Operator queues and callback tasks (Bearer key; `operator` scope, reads also `read`)",
    ),
    (
        "webhooks",
        "Twilio callbacks (X-Twilio-Signature) and the media websocket (stream token)",
    ),
    ("ops", "Health, metrics and these documents"),
    ("admin", "Platform administration (x-admin-key)"),
];

/// Security scheme names.
const BEARER: &str = "bearer";
const ADMIN_KEY: &str = "admin_key";
const TWILIO_SIGNATURE: &str = "twilio_signature";

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorResponse::name())))
                .build(),
        )
        .build()
        .into()
}

/// Documents `status` with `description` unless the operation already documents it.
fn answers(op: &mut Operation, status: u16, description: &str) {
    let entry = op
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| error_response(description));
    // A status the attribute lists without saying why gets the guard's reason.
    if let RefOr::T(response) = entry
        && response.description.is_empty()
    {
        response.description = description.to_owned();
    }
}

/// The operation of `m` as the documents show it.
pub fn operation(m: &Mount) -> Operation {
    let mut op = m.operation();
    let retry = "the service is draining, or a component is restarting or busy; retry shortly";
    match m.auth() {
        Auth::Ops | Auth::StreamToken => {}
        Auth::Public => answers(
            &mut op,
            429,
            "too many requests from this address (see Retry-After)",
        ),
        Auth::Tenant(scopes) => {
            op.security = Some(if scopes.is_empty() {
                vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]
            } else {
                // Alternatives: a key holding any one of the scopes is enough.
                scopes
                    .iter()
                    .map(|s| SecurityRequirement::new(BEARER, [s.as_str()]))
                    .collect()
            });
            answers(&mut op, 401, "missing, invalid or revoked api key");
            answers(
                &mut op,
                403,
                "the key lacks the scope (`insufficient_scope`), or the tenant is suspended",
            );
            answers(
                &mut op,
                429,
                "the tenant's rate limit, or too many failed attempts from this address (see Retry-After)",
            );
            answers(&mut op, 503, retry);
        }
        Auth::Admin(roles) => {
            op.security = Some(vec![SecurityRequirement::new(
                ADMIN_KEY,
                Vec::<String>::new(),
            )]);
            answers(&mut op, 401, "missing or wrong x-admin-key");
            if roles.len() < AdminRole::ALL.len() {
                answers(
                    &mut op,
                    403,
                    "the admin identity lacks the role (`insufficient_role`)",
                );
            }
            answers(
                &mut op,
                404,
                "not found; every admin path is not found when no admin key is configured",
            );
            answers(
                &mut op,
                429,
                "too many failed attempts from this address (see Retry-After)",
            );
            answers(&mut op, 503, retry);
        }
        Auth::Twilio => {
            op.security = Some(vec![SecurityRequirement::new(
                TWILIO_SIGNATURE,
                Vec::<String>::new(),
            )]);
            answers(
                &mut op,
                400,
                "a required Twilio parameter is missing or malformed",
            );
            answers(
                &mut op,
                403,
                "the X-Twilio-Signature does not verify with the account's auth token",
            );
            answers(
                &mut op,
                429,
                "the tenant's webhook rate limit (see Retry-After)",
            );
            answers(&mut op, 503, retry);
        }
    }
    match m.body() {
        BodyKind::None => {}
        BodyKind::Json => {
            answers(
                &mut op,
                400,
                "the body is not JSON or does not match the schema (`field` names the input at fault)",
            );
            answers(&mut op, 413, "the body is larger than the configured limit");
            answers(&mut op, 415, "the content type is not application/json");
            answers(
                &mut op,
                422,
                "the body is well-formed but a field is invalid (`field` names it)",
            );
        }
        BodyKind::Form => answers(&mut op, 413, "the body is larger than the configured limit"),
    }
    if m.has_query() && m.auth() != Auth::Twilio {
        answers(
            &mut op,
            400,
            "a query parameter is invalid (`field` names it)",
        );
    }
    if m.template().params() > 0 && !matches!(m.auth(), Auth::Ops | Auth::Public) {
        answers(&mut op, 404, "no such object");
    }
    non_empty_path_parameters(&mut op);
    op
}

/// A path segment is never empty (the router refuses it): a string path parameter the
/// handler documents without a pattern, enumeration or format gets `minLength: 1`, so that
/// the schema accepts nothing the server refuses.
fn non_empty_path_parameters(op: &mut Operation) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{SchemaType, Type};
    for param in op.parameters.iter_mut().flatten() {
        if param.parameter_in != ParameterIn::Path {
            continue;
        }
        if let Some(RefOr::T(Schema::Object(schema))) = param.schema.as_mut()
            && schema.schema_type == SchemaType::Type(Type::String)
            && schema.pattern.is_none()
            && schema.enum_values.is_none()
            && schema.format.is_none()
            && schema.min_length.is_none()
        {
            schema.min_length = Some(1);
        }
    }
}

/// A document, as served: the derived operations ([`operation`]) with every named format
/// replaced by its rule ([`formats`]).
pub fn document(which: Document) -> serde_json::Value {
    let mut value = serde_json::to_value(derived(which)).unwrap_or_default();
    formats::apply(&mut value);
    value
}

/// The document as utoipa derives it from the route table (named formats left as they are).
pub fn derived(which: Document) -> OpenApi {
    let mut paths = Paths::new();
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    let mut tags: BTreeSet<String> = BTreeSet::new();
    let mut schemes: BTreeSet<&str> = BTreeSet::new();
    for m in table().iter().filter(|m| which.includes(m.auth())) {
        let op = operation(m);
        tags.extend(op.tags.iter().flatten().cloned());
        for requirement in op.security.iter().flatten() {
            let value = serde_json::to_value(requirement).unwrap_or_default();
            for name in [BEARER, ADMIN_KEY, TWILIO_SIGNATURE] {
                if value.get(name).is_some() {
                    schemes.insert(name);
                }
            }
        }
        paths.add_path_operation(m.path(), vec![m.http_method()], op);
        m.schemas(&mut schemas);
    }
    let mut components = ComponentsBuilder::new()
        .schema(ErrorResponse::name(), ErrorResponse::schema())
        .schema(ErrorObject::name(), ErrorObject::schema())
        .schemas_from_iter(schemas)
        .build();
    for name in schemes {
        let scheme = match name {
            BEARER => {
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build())
            }
            ADMIN_KEY => SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-admin-key"))),
            _ => SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Twilio-Signature",
                "HMAC-SHA1 of the request URL and its parameters with the account's auth token",
            ))),
        };
        components.add_security_scheme(name, scheme);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(which.title())
                .description(Some(which.description()))
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .tags(Some(
            TAGS.iter()
                .filter(|(name, _)| tags.contains(*name))
                .map(|(name, description)| {
                    TagBuilder::new()
                        .name(*name)
                        .description(Some(*description))
                        .build()
                }),
        ))
        .build()
}

/// The document as pretty JSON.
pub fn document_json(which: Document) -> String {
    serde_json::to_string_pretty(&document(which)).unwrap_or_else(|_| String::from("{}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_formats_are_replaced_in_every_document() {
        for which in [Document::Public, Document::Admin, Document::Full] {
            let mut value = document(which);
            let before = value.clone();
            formats::apply(&mut value);
            assert_eq!(value, before, "{which:?}: a named format is left");
            let text = document_json(which);
            assert!(
                text.contains(formats::E164.replace('\\', "\\\\").as_str()),
                "{which:?}"
            );
        }
    }
}
