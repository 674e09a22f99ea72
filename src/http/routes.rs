//! The route table: every route the server mounts, once, with its authentication.
//!
//! A route's method, path and documentation are in its handler's `#[utoipa::path]`
//! attribute; this list adds how the caller authenticates. The server's filter, the
//! request metrics' route labels and the three OpenAPI documents are all derived from it.

use std::sync::LazyLock;

use actors::store::Scope::{Operator, Read, Runtime};

use super::admin::{
    agents, api_keys, audit, chaos, credentials, diagnostics, event_webhooks, governance,
    identities, launch, nodes as admin_nodes, phone_routes, queues as admin_queues, readiness,
    recording_settings, rollouts, runtime_config, tenants,
};
use super::guard::{admin, admin_or_approver, approver, ops, public, tenant, twilio};
use super::mount::Mount;
use super::{
    call_stream, callbacks, calls, campaigns, dnc, docs, evaluation_series, evaluations,
    live_stream, media, ops as health, queues, recordings, runtime, sessions, warm_transfer,
    webhook_deliveries, webhooks,
};
use crate::mount;

static TABLE: LazyLock<Vec<Mount>> = LazyLock::new(|| {
    vec![
        // ops and documents
        mount!(health::live, ops()),
        mount!(health::ready, ops()),
        mount!(health::metrics, public()),
        mount!(docs::public_doc, public()),
        mount!(docs::admin_doc, public()),
        mount!(docs::full_doc, public()),
        // runtime (tenant key)
        mount!(runtime::me, tenant(&[])),
        mount!(calls::make_call, tenant(&[Runtime])),
        mount!(calls::list_call_logs, tenant(&[Read])),
        mount!(calls::get_call_log, tenant(&[Read])),
        mount!(calls::hangup, tenant(&[Operator, Runtime])),
        mount!(calls::transfer, tenant(&[Operator, Runtime])),
        mount!(campaigns::create_campaign, tenant(&[Runtime])),
        mount!(campaigns::list_campaigns, tenant(&[Read])),
        mount!(campaigns::get_campaign, tenant(&[Read])),
        mount!(campaigns::pause_campaign, tenant(&[Runtime])),
        mount!(campaigns::resume_campaign, tenant(&[Runtime])),
        mount!(campaigns::cancel_campaign, tenant(&[Runtime])),
        mount!(campaigns::campaign_contacts, tenant(&[Read])),
        mount!(sessions::list_sessions, tenant(&[Read])),
        mount!(sessions::get_session, tenant(&[Read])),
        mount!(sessions::active_sessions, tenant(&[Read])),
        mount!(sessions::active_session, tenant(&[Read])),
        mount!(live_stream::active_stream, tenant(&[Read])),
        mount!(call_stream::call_stream, tenant(&[Read])),
        mount!(evaluations::list_evaluations, tenant(&[Read])),
        mount!(evaluations::get_evaluation, tenant(&[Read])),
        mount!(evaluations::review_evaluation, tenant(&[Operator])),
        mount!(evaluations::evaluate_session, tenant(&[Operator])),
        mount!(
            webhook_deliveries::list_deliveries,
            tenant(&[Read, Operator])
        ),
        mount!(webhook_deliveries::get_delivery, tenant(&[Read, Operator])),
        mount!(webhook_deliveries::redeliver, tenant(&[Runtime, Operator])),
        // call recordings (issue 16, part 1)
        mount!(recordings::list_recordings, tenant(&[Read])),
        mount!(recordings::get_recording, tenant(&[Read])),
        mount!(recordings::recording_media, tenant(&[Read])),
        mount!(recordings::delete_recording, tenant(&[Operator, Runtime])),
        // operator (tenant key)
        mount!(queues::list_queues, tenant(&[Operator])),
        mount!(queues::create_queue, tenant(&[Operator])),
        mount!(queues::get_queue, tenant(&[Operator])),
        mount!(queues::put_queue, tenant(&[Operator])),
        mount!(queues::delete_queue, tenant(&[Operator])),
        mount!(callbacks::list_tasks, tenant(&[Read, Operator])),
        mount!(callbacks::create_task, tenant(&[Operator, Runtime])),
        mount!(callbacks::get_task, tenant(&[Read, Operator])),
        mount!(callbacks::claim_task, tenant(&[Operator])),
        mount!(callbacks::complete_task, tenant(&[Operator])),
        mount!(callbacks::cancel_task, tenant(&[Operator])),
        // do-not-call list (tenant key)
        mount!(dnc::list_dnc, tenant(&[Read, Operator])),
        mount!(dnc::add_dnc, tenant(&[Operator, Runtime])),
        mount!(dnc::import_dnc, tenant(&[Operator, Runtime])),
        mount!(dnc::remove_dnc, tenant(&[Operator, Runtime])),
        // Twilio
        mount!(webhooks::incoming_call, twilio()),
        mount!(webhooks::stream_ended, twilio()),
        mount!(webhooks::call_status, twilio()),
        mount!(webhooks::stream_status, twilio()),
        mount!(webhooks::amd_status, twilio()),
        mount!(webhooks::dial_result, twilio()),
        mount!(recordings::recording_status, twilio()),
        mount!(warm_transfer::whisper, twilio()),
        mount!(warm_transfer::decision, twilio()),
        mount!(warm_transfer::operator_status, twilio()),
        mount!(warm_transfer::conference_status, twilio()),
        mount!(websocket media::media_stream),
        // admin
        mount!(tenants::list_tenants, admin()),
        mount!(tenants::create_tenant, admin()),
        mount!(tenants::get_tenant, admin()),
        mount!(tenants::patch_tenant, admin()),
        mount!(runtime_config::put_runtime_config, admin()),
        mount!(credentials::put_twilio_credentials, admin()),
        mount!(credentials::put_openai_key, admin()),
        mount!(credentials::delete_openai_key, admin()),
        mount!(event_webhooks::put_event_webhook, admin()),
        mount!(event_webhooks::get_event_webhook, admin()),
        mount!(event_webhooks::delete_event_webhook, admin()),
        mount!(event_webhooks::rotate_signing_secret, admin()),
        mount!(api_keys::list_api_keys, admin()),
        mount!(api_keys::create_api_key, admin()),
        mount!(api_keys::revoke_api_key, admin()),
        mount!(admin_queues::list_queues, admin()),
        mount!(admin_queues::create_queue, admin()),
        mount!(admin_queues::get_queue, admin()),
        mount!(admin_queues::put_queue, admin()),
        mount!(admin_queues::delete_queue, admin()),
        mount!(audit::audit_log, admin()),
        mount!(diagnostics::actor_diagnostics, admin()),
        mount!(diagnostics::database_diagnostics, admin()),
        mount!(diagnostics::providers_diagnostics, admin()),
        mount!(phone_routes::routing_diagnostics, admin()),
        mount!(phone_routes::auth_transport, admin()),
        mount!(sessions::admin_active_sessions, admin()),
        mount!(admin_nodes::list_nodes, admin()),
        mount!(phone_routes::list_routes, admin()),
        mount!(phone_routes::create_route, admin()),
        mount!(phone_routes::get_route, admin()),
        mount!(phone_routes::patch_route, admin()),
        mount!(phone_routes::delete_route, admin()),
        mount!(agents::list_agents, admin()),
        mount!(agents::create_agent, admin()),
        mount!(agents::get_agent, admin()),
        mount!(agents::list_versions, admin()),
        mount!(agents::create_version, admin()),
        mount!(agents::get_version, admin()),
        mount!(agents::put_version, admin()),
        mount!(agents::approve_version, approver()),
        mount!(agents::retire_version, admin()),
        mount!(evaluations::evaluation_summary, admin()),
        mount!(evaluation_series::evaluation_series, admin()),
        // governance
        mount!(identities::list_identities, admin()),
        mount!(identities::create_identity, admin()),
        mount!(identities::revoke_identity, admin()),
        mount!(governance::get_governance, admin()),
        mount!(governance::put_governance, admin()),
        mount!(recording_settings::get_recording_settings, admin()),
        mount!(recording_settings::put_recording_settings, admin()),
        mount!(governance::get_tenant_dial_policy, admin()),
        mount!(governance::put_tenant_dial_policy, admin()),
        mount!(governance::get_route_dial_policy, admin()),
        mount!(governance::put_route_dial_policy, admin()),
        mount!(launch::get_launch, admin()),
        mount!(launch::put_launch, admin()),
        mount!(launch::approve_launch, admin_or_approver()),
        mount!(rollouts::put_rollout_policy, admin()),
        mount!(rollouts::rollout_start, admin()),
        mount!(rollouts::rollout_advance, admin()),
        mount!(rollouts::rollout_pause, admin()),
        mount!(rollouts::rollout_rollback, admin()),
        mount!(rollouts::rollout_promote, admin()),
        mount!(rollouts::rollout_governance, admin()),
        mount!(readiness::get_readiness, admin()),
        // chaos testing
        mount!(chaos::inject_chaos, admin()),
    ]
});

/// Every mounted route, in the order the server tries them.
pub fn table() -> &'static [Mount] {
    &TABLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_well_formed_and_unambiguous() {
        let table = table();
        assert!(table.len() > 70, "{}", table.len());
        for m in table {
            assert_eq!(m.declared_methods(), 1, "{} {}", m.method(), m.path());
            assert_eq!(
                m.template().params(),
                m.handler_params(),
                "{} {}: the handler's path parameters do not match the template",
                m.method(),
                m.path()
            );
        }
        for (i, a) in table.iter().enumerate() {
            for b in &table[i + 1..] {
                assert!(
                    a.method() != b.method() || !a.template().overlaps(b.template()),
                    "{} {} and {}",
                    a.method(),
                    a.path(),
                    b.path()
                );
            }
        }
    }
}
