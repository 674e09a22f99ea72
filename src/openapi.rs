//! OpenAPI 3.1 documents generated with utoipa from the handler annotations.
//!
//! Three scoped documents: public (runtime, webhooks, ops, docs), admin, and full (both).

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::http::admin::{agents, event_webhooks, phone_routes, queues as admin_queues};
use crate::http::{
    admin, callbacks, calls, media, ops, queues, runtime, sessions, webhook_deliveries, webhooks,
};

/// The error shape of every endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorObject,
}

/// Error detail.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Machine-readable code (e.g. `validation_failed`, `unauthorized`, `rate_limited`).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The input field at fault, on 400/422.
    pub field: Option<String>,
    /// The request id (also in the `x-request-id` header).
    pub request_id: String,
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-admin-key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "StateSet Voice API", description = "Runtime API for AI phone agents: calls, records and Twilio webhooks."),
    paths(
        ops::live, ops::ready, ops::metrics, runtime::me,
        calls::make_call, calls::list_call_logs, calls::get_call_log, calls::hangup, calls::transfer,
        sessions::list_sessions, sessions::get_session, sessions::active_sessions, sessions::active_stream,
        webhook_deliveries::list_deliveries, webhook_deliveries::get_delivery, webhook_deliveries::redeliver,
        webhooks::incoming_call, webhooks::stream_ended, webhooks::dial_result, webhooks::call_status, webhooks::stream_status,
        webhooks::amd_status, media::media_stream_doc,
        queues::list_queues, queues::create_queue, queues::get_queue, queues::put_queue, queues::delete_queue,
        callbacks::list_tasks, callbacks::create_task, callbacks::get_task, callbacks::claim_task,
        callbacks::complete_task, callbacks::cancel_task,
    ),
    components(schemas(ErrorResponse, ErrorObject)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "runtime", description = "Tenant API (Bearer key)"),
        (name = "operator", description = "Operator queues and callback tasks (Bearer key; `operator` scope, reads also `read`)"),
        (name = "webhooks", description = "Twilio callbacks (X-Twilio-Signature) and the media websocket (stream token)"),
        (name = "ops", description = "Health and metrics")
    )
)]
struct PublicApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "StateSet Voice Admin API", description = "Tenants, keys, credentials, governance and diagnostics (x-admin-key)."),
    paths(
        admin::list_tenants, admin::create_tenant, admin::get_tenant, admin::patch_tenant,
        admin::put_runtime_config, admin::put_twilio_credentials, admin::put_openai_key, admin::delete_openai_key,
        admin::list_api_keys, admin::create_api_key, admin::revoke_api_key,
        admin::audit_log, admin::actor_diagnostics,
        phone_routes::list_routes, phone_routes::create_route, phone_routes::get_route,
        phone_routes::patch_route, phone_routes::delete_route,
        phone_routes::routing_diagnostics, phone_routes::auth_transport,
        agents::list_agents, agents::create_agent, agents::get_agent, agents::list_versions,
        agents::create_version, agents::get_version, agents::put_version, agents::approve_version,
        agents::retire_version, sessions::admin_active_sessions,
        event_webhooks::put_event_webhook, event_webhooks::get_event_webhook,
        event_webhooks::delete_event_webhook, event_webhooks::rotate_signing_secret,
        admin_queues::list_queues, admin_queues::create_queue, admin_queues::get_queue,
        admin_queues::put_queue, admin_queues::delete_queue,
    ),
    components(schemas(ErrorResponse, ErrorObject)),
    modifiers(&SecuritySchemes),
    tags((name = "admin", description = "Platform administration (x-admin-key)"))
)]
struct AdminApi;

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// Runtime, webhooks, ops.
    Public,
    /// Admin.
    Admin,
    /// Everything.
    Full,
}

const DOC_PATHS: [(&str, &str); 3] = [
    ("/api-docs/public.json", "The public OpenAPI document"),
    ("/api-docs/admin.json", "The admin OpenAPI document"),
    ("/api-docs/openapi.json", "The full OpenAPI document"),
];

/// Adds the document endpoints themselves (plain JSON, no schema) to a document.
fn with_doc_paths(mut doc: utoipa::openapi::OpenApi, which: Document) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    for (path, summary) in DOC_PATHS {
        if which == Document::Public && path != "/api-docs/public.json" {
            continue;
        }
        let op = OperationBuilder::new()
            .summary(Some(summary))
            .tag("ops")
            .response(
                "200",
                ResponseBuilder::new()
                    .description("OpenAPI 3.1 document")
                    .content("application/json", ContentBuilder::new().build())
                    .build(),
            )
            .build();
        doc.paths
            .paths
            .insert(path.to_owned(), PathItem::new(HttpMethod::Get, op));
    }
    doc
}

/// Builds a document.
pub fn document(which: Document) -> utoipa::openapi::OpenApi {
    let version = env!("CARGO_PKG_VERSION");
    let mut doc = match which {
        Document::Public => with_doc_paths(PublicApi::openapi(), which),
        Document::Admin => AdminApi::openapi(),
        Document::Full => {
            let mut full = with_doc_paths(PublicApi::openapi(), which);
            full.merge(AdminApi::openapi());
            full.info.title = "StateSet Voice API (full)".to_owned();
            full
        }
    };
    doc.info.version = version.to_owned();
    doc
}

/// The document as pretty JSON.
pub fn document_json(which: Document) -> String {
    document(which)
        .to_pretty_json()
        .unwrap_or_else(|_| String::from("{}"))
}
