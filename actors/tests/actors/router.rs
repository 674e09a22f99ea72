//! The router, driven by message: every route change it commits is in the shared route
//! cache at once, so admission reads the current route without its mailbox.

use actors::router::{RoutePatch, RouterMsg};
use actors::telephony::PlacementSettings;
use ractor::call_t;

use crate::support::{MS, NUMBER, meta, start, telephony_tenant};

#[tokio::test]
async fn route_changes_keep_the_shared_cache_current() {
    let tree = start(PlacementSettings::default()).await;
    let routes = tree.actors.telephony.routes().clone();
    // A number nobody routes is cached as unrouted by the first reader.
    assert_eq!(
        routes
            .route_for(&tree.store, "+14155550199")
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(routes.cached("+14155550199"), Some(None));

    // Creating a route (by message) puts it in the cache: no store read needed.
    let (tenant, _) = telephony_tenant(&tree).await;
    let cached = routes.cached(NUMBER).expect("cached").expect("routed");
    assert_eq!(cached.tenant_id, tenant);
    let router = tree.actors.router.get().expect("router");

    // Moving it to the number that was cached as unrouted: the old number is unrouted,
    // the new one routed, both at once.
    let moved = call_t!(
        router,
        RouterMsg::UpdateRoute,
        MS,
        cached.id.clone(),
        RoutePatch {
            number: Some("+14155550199".into()),
            agent_key: Some("sales".into()),
            ..RoutePatch::default()
        },
        meta()
    )
    .expect("answer")
    .expect("updated");
    assert_eq!(routes.cached(NUMBER), Some(None));
    let now = routes
        .cached("+14155550199")
        .expect("cached")
        .expect("routed");
    assert_eq!(now.agent_key, "sales");
    assert_eq!(
        routes
            .route_for(&tree.store, "+14155550199")
            .await
            .expect("lookup")
            .map(|r| r.id),
        Some(moved.id.clone())
    );

    // Deleting it: unrouted at once.
    call_t!(router, RouterMsg::DeleteRoute, MS, moved.id.clone(), meta())
        .expect("answer")
        .expect("deleted");
    assert_eq!(routes.cached("+14155550199"), Some(None));
    assert_eq!(
        routes
            .route_for(&tree.store, "+14155550199")
            .await
            .expect("lookup"),
        None
    );
    // A conflict changes nothing in the cache.
    let again = call_t!(router, RouterMsg::DeleteRoute, MS, moved.id, meta()).expect("answer");
    assert!(again.is_err());
    assert_eq!(routes.cached("+14155550199"), Some(None));
}
