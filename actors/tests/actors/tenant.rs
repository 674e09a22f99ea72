//! The tenant actor and its shared directory: keys authenticate through the directory
//! (never the mailbox), a revocation or a suspension holds from the very next request, and
//! an admin request stuck in the mailbox does not delay authentication.

use std::time::Duration;

use actors::store::TenantStatus;
use actors::telephony::PlacementSettings;
use actors::tenant::{AuthError, NewApiKey, NewTenant, TenantMsg, TenantPatch};
use ractor::call_t;
use sqlx::Connection as _;

use crate::support::{MS, meta, start};

#[tokio::test]
async fn keys_authenticate_through_the_directory_and_changes_hold_at_once() {
    let tree = start(PlacementSettings::default()).await;
    let tenants = tree.actors.tenant.get().expect("tenant actor");
    let directory = tree.actors.tenants.clone();
    let tenant = call_t!(
        tenants,
        TenantMsg::Create,
        MS,
        NewTenant {
            name: "Acme".into(),
            max_concurrent_calls: 5,
            webhook_url: None,
        },
        meta()
    )
    .expect("answer")
    .expect("tenant");
    let key = call_t!(
        tenants,
        TenantMsg::CreateApiKey,
        MS,
        tenant.id.clone(),
        NewApiKey {
            name: "k".into(),
            scopes: vec![actors::store::Scope::Read],
        },
        meta()
    )
    .expect("answer")
    .expect("key");
    assert_eq!(directory.cached_keys(), 0);
    let auth = directory.authenticate(&key.secret).await.expect("auth");
    assert_eq!(auth.tenant_id, tenant.id);
    assert_eq!(auth.tenant_name, "Acme");
    assert_eq!(directory.cached_keys(), 1, "a miss is read and cached");
    directory.authenticate(&key.secret).await.expect("cached");

    // Suspended: refused on the next request, though the key is cached.
    call_t!(
        tenants,
        TenantMsg::Update,
        MS,
        tenant.id.clone(),
        TenantPatch {
            status: Some(TenantStatus::Suspended),
            name: Some("Acme Health".into()),
            ..TenantPatch::default()
        },
        meta()
    )
    .expect("answer")
    .expect("suspended");
    assert!(matches!(
        directory.authenticate(&key.secret).await,
        Err(AuthError::Suspended)
    ));
    call_t!(
        tenants,
        TenantMsg::Update,
        MS,
        tenant.id.clone(),
        TenantPatch {
            status: Some(TenantStatus::Active),
            ..TenantPatch::default()
        },
        meta()
    )
    .expect("answer")
    .expect("active");
    let auth = directory.authenticate(&key.secret).await.expect("auth");
    assert_eq!(auth.tenant_name, "Acme Health");

    // Revoked: refused on the very next request.
    call_t!(
        tenants,
        TenantMsg::RevokeApiKey,
        MS,
        tenant.id.clone(),
        key.key.id.clone(),
        meta()
    )
    .expect("answer")
    .expect("revoked");
    assert!(matches!(
        directory.authenticate(&key.secret).await,
        Err(AuthError::InvalidKey)
    ));
    assert_eq!(directory.cached_keys(), 0);
    assert!(matches!(
        directory.authenticate("svk_not-a-key-of-ours").await,
        Err(AuthError::InvalidKey)
    ));
}

#[tokio::test]
async fn a_slow_admin_request_does_not_delay_authentication() {
    let tree = start(PlacementSettings::default()).await;
    let tenants = tree.actors.tenant.get().expect("tenant actor");
    let tenant = call_t!(
        tenants,
        TenantMsg::Create,
        MS,
        NewTenant {
            name: "Acme".into(),
            max_concurrent_calls: 5,
            webhook_url: None,
        },
        meta()
    )
    .expect("answer")
    .expect("tenant");
    let mut secrets = Vec::new();
    for name in ["cached", "fresh"] {
        let key = call_t!(
            tenants,
            TenantMsg::CreateApiKey,
            MS,
            tenant.id.clone(),
            NewApiKey {
                name: name.into(),
                scopes: vec![actors::store::Scope::Read],
            },
            meta()
        )
        .expect("answer")
        .expect("key");
        secrets.push(key.secret);
    }
    let directory = tree.actors.tenants.clone();
    directory.authenticate(&secrets[0]).await.expect("auth");

    // Writes stall: the next admin request blocks the tenant actor's mailbox.
    let mut lock = sqlx::SqliteConnection::connect(&tree.database_url)
        .await
        .expect("connection");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .expect("lock");
    // Enqueued before anything else (sent now, answered later).
    let (port, slow) = ractor::concurrency::oneshot();
    tenants
        .send_message(TenantMsg::Create(
            NewTenant {
                name: "Slow".into(),
                max_concurrent_calls: 5,
                webhook_url: None,
            },
            meta(),
            port.into(),
        ))
        .expect("sent");
    // The actor is busy with it: a read through the mailbox waits behind it…
    let queued = call_t!(tenants, TenantMsg::Get, 300, tenant.id.clone());
    assert!(queued.is_err(), "the tenant mailbox is held up");
    // …while authentication, cached or not, answers at once.
    for secret in &secrets {
        let auth = tokio::time::timeout(Duration::from_millis(500), directory.authenticate(secret))
            .await
            .expect("authentication does not wait for the mailbox")
            .expect("auth");
        assert_eq!(auth.tenant_id, tenant.id);
    }
    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("unlock");
    let created = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the admin request finishes once writes resume")
        .expect("answer")
        .expect("created");
    assert_eq!(created.name, "Slow");
}
