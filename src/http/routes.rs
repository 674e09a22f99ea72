//! The route table: every path the server mounts, once.

/// One mounted route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: &'static str,
    /// Path template as in the OpenAPI document (`{tenant_id}` for parameters).
    pub path: &'static str,
}

macro_rules! routes {
    ($($name:ident = $method:literal $path:literal;)*) => {
        $(
            #[doc = concat!("`", $method, " ", $path, "`")]
            pub const $name: RouteSpec = RouteSpec { method: $method, path: $path };
        )*
        /// All routes.
        pub const ROUTES: &[RouteSpec] = &[$($name),*];
    };
}

routes! {
    HEALTH_LIVE = "GET" "/health/live";
    HEALTH_READY = "GET" "/health/ready";
    METRICS = "GET" "/metrics";
    DOCS_PUBLIC = "GET" "/api-docs/public.json";
    DOCS_ADMIN = "GET" "/api-docs/admin.json";
    DOCS_FULL = "GET" "/api-docs/openapi.json";
    ME = "GET" "/api/v1/me";
    ADMIN_TENANTS_LIST = "GET" "/api/v1/admin/tenants";
    ADMIN_TENANTS_CREATE = "POST" "/api/v1/admin/tenants";
    ADMIN_TENANT_GET = "GET" "/api/v1/admin/tenants/{tenant_id}";
    ADMIN_TENANT_PATCH = "PATCH" "/api/v1/admin/tenants/{tenant_id}";
    ADMIN_TENANT_RUNTIME_CONFIG = "PUT" "/api/v1/admin/tenants/{tenant_id}/runtime-config";
    ADMIN_TENANT_TWILIO = "PUT" "/api/v1/admin/tenants/{tenant_id}/twilio-credentials";
    ADMIN_TENANT_OPENAI_KEY_PUT = "PUT" "/api/v1/admin/tenants/{tenant_id}/openai-key";
    ADMIN_TENANT_OPENAI_KEY_DELETE = "DELETE" "/api/v1/admin/tenants/{tenant_id}/openai-key";
    ADMIN_TENANT_EVENT_WEBHOOK_PUT = "PUT" "/api/v1/admin/tenants/{tenant_id}/event-webhook";
    ADMIN_TENANT_EVENT_WEBHOOK_GET = "GET" "/api/v1/admin/tenants/{tenant_id}/event-webhook";
    ADMIN_TENANT_EVENT_WEBHOOK_DELETE = "DELETE" "/api/v1/admin/tenants/{tenant_id}/event-webhook";
    ADMIN_TENANT_SIGNING_SECRET = "POST" "/api/v1/admin/tenants/{tenant_id}/signing-secret";
    ADMIN_API_KEYS_LIST = "GET" "/api/v1/admin/tenants/{tenant_id}/api-keys";
    ADMIN_API_KEYS_CREATE = "POST" "/api/v1/admin/tenants/{tenant_id}/api-keys";
    ADMIN_API_KEY_REVOKE = "DELETE" "/api/v1/admin/tenants/{tenant_id}/api-keys/{key_id}";
    ADMIN_AUDIT_LOG = "GET" "/api/v1/admin/audit-log";
    ADMIN_DIAGNOSTICS_ACTORS = "GET" "/api/v1/admin/diagnostics/actors";
    ADMIN_DIAGNOSTICS_ROUTING = "GET" "/api/v1/admin/diagnostics/routing";
    ADMIN_ALERTS_AUTH_TRANSPORT = "GET" "/api/v1/admin/alerts/auth-transport";
    ADMIN_PHONE_ROUTES_LIST = "GET" "/api/v1/admin/phone-routes";
    ADMIN_PHONE_ROUTES_CREATE = "POST" "/api/v1/admin/phone-routes";
    ADMIN_PHONE_ROUTE_GET = "GET" "/api/v1/admin/phone-routes/{route_id}";
    ADMIN_PHONE_ROUTE_PATCH = "PATCH" "/api/v1/admin/phone-routes/{route_id}";
    ADMIN_PHONE_ROUTE_DELETE = "DELETE" "/api/v1/admin/phone-routes/{route_id}";
    ADMIN_AGENTS_LIST = "GET" "/api/v1/admin/agents";
    ADMIN_AGENTS_CREATE = "POST" "/api/v1/admin/agents";
    ADMIN_AGENT_GET = "GET" "/api/v1/admin/agents/{agent_id}";
    ADMIN_AGENT_VERSIONS_LIST = "GET" "/api/v1/admin/agents/{agent_id}/versions";
    ADMIN_AGENT_VERSIONS_CREATE = "POST" "/api/v1/admin/agents/{agent_id}/versions";
    ADMIN_AGENT_VERSION_GET = "GET" "/api/v1/admin/agent-versions/{version_id}";
    ADMIN_AGENT_VERSION_PUT = "PUT" "/api/v1/admin/agent-versions/{version_id}";
    ADMIN_AGENT_VERSION_APPROVE = "POST" "/api/v1/admin/agent-versions/{version_id}/approve";
    ADMIN_AGENT_VERSION_RETIRE = "POST" "/api/v1/admin/agent-versions/{version_id}/retire";
    INCOMING_CALL = "POST" "/api/v1/incoming-call";
    STREAM_ENDED = "POST" "/api/v1/stream-ended";
    CALL_STATUS = "POST" "/api/v1/call-status";
    STREAM_STATUS = "POST" "/api/v1/stream-status";
    AMD_STATUS = "POST" "/api/v1/amd-status";
    DIAL_RESULT = "POST" "/api/v1/dial-result";
    MEDIA_STREAM = "GET" "/media-stream";
    MAKE_CALL = "POST" "/api/v1/make-call";
    VOICE_SESSIONS_LIST = "GET" "/api/v1/voice-sessions";
    VOICE_SESSION_GET = "GET" "/api/v1/voice-sessions/{id}";
    ACTIVE_SESSIONS = "GET" "/api/v1/active-sessions";
    ACTIVE_SESSIONS_STREAM = "GET" "/api/v1/active-sessions/stream";
    ADMIN_ACTIVE_SESSIONS = "GET" "/api/v1/admin/active-sessions";
    CALL_LOGS_LIST = "GET" "/api/v1/call-logs";
    CALL_LOG_GET = "GET" "/api/v1/call-logs/{id}";
    CALL_HANGUP = "POST" "/api/v1/calls/{call_sid}/hangup";
    CALL_TRANSFER = "POST" "/api/v1/calls/{call_sid}/transfer";
    WEBHOOK_DELIVERIES_LIST = "GET" "/api/v1/webhook-deliveries";
    WEBHOOK_DELIVERY_GET = "GET" "/api/v1/webhook-deliveries/{id}";
    WEBHOOK_DELIVERY_REDELIVER = "POST" "/api/v1/webhook-deliveries/{id}/redeliver";
    OPERATOR_QUEUES_LIST = "GET" "/api/v1/operator-queues";
    OPERATOR_QUEUES_CREATE = "POST" "/api/v1/operator-queues";
    OPERATOR_QUEUE_GET = "GET" "/api/v1/operator-queues/{id}";
    OPERATOR_QUEUE_PUT = "PUT" "/api/v1/operator-queues/{id}";
    OPERATOR_QUEUE_DELETE = "DELETE" "/api/v1/operator-queues/{id}";
    ADMIN_OPERATOR_QUEUES_LIST = "GET" "/api/v1/admin/tenants/{tenant_id}/operator-queues";
    ADMIN_OPERATOR_QUEUES_CREATE = "POST" "/api/v1/admin/tenants/{tenant_id}/operator-queues";
    ADMIN_OPERATOR_QUEUE_GET = "GET" "/api/v1/admin/tenants/{tenant_id}/operator-queues/{queue_id}";
    ADMIN_OPERATOR_QUEUE_PUT = "PUT" "/api/v1/admin/tenants/{tenant_id}/operator-queues/{queue_id}";
    ADMIN_OPERATOR_QUEUE_DELETE = "DELETE" "/api/v1/admin/tenants/{tenant_id}/operator-queues/{queue_id}";
    CALLBACK_TASKS_LIST = "GET" "/api/v1/callback-tasks";
    CALLBACK_TASKS_CREATE = "POST" "/api/v1/callback-tasks";
    CALLBACK_TASK_GET = "GET" "/api/v1/callback-tasks/{id}";
    CALLBACK_TASK_CLAIM = "POST" "/api/v1/callback-tasks/{id}/claim";
    CALLBACK_TASK_COMPLETE = "POST" "/api/v1/callback-tasks/{id}/complete";
    CALLBACK_TASK_CANCEL = "POST" "/api/v1/callback-tasks/{id}/cancel";
}
