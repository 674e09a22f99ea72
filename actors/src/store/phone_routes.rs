//! Phone routes: create, read (by id or number), list, update and delete, with audit rows.

use super::audit::insert_audit;
use super::{
    NewAudit, OverLimit, Page, PhoneRoute, RouteDirection, RouteStatus, Store, StoreError, as_i64,
    on_pool,
};
use crate::ids::{RouteId, TenantId};

#[derive(sqlx::FromRow)]
struct RouteRow {
    id: String,
    tenant_id: String,
    number: String,
    agent_key: String,
    direction: String,
    status: String,
    fallback_number: Option<String>,
    fallback_message: Option<String>,
    over_limit: String,
    max_concurrent_calls: i64,
    test_callers: String,
    recording_policy: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const ROUTE_COLUMNS: &str = "id, tenant_id, number, agent_key, direction, status, fallback_number, \
     fallback_message, over_limit, max_concurrent_calls, test_callers, recording_policy, created_at, updated_at";

impl TryFrom<RouteRow> for PhoneRoute {
    type Error = StoreError;

    fn try_from(r: RouteRow) -> Result<Self, StoreError> {
        Ok(PhoneRoute {
            id: RouteId::from_stored(r.id),
            tenant_id: TenantId::from_stored(r.tenant_id),
            number: r.number,
            agent_key: r.agent_key,
            direction: RouteDirection::parse(&r.direction)
                .ok_or(StoreError::Corrupt("phone_routes.direction"))?,
            status: RouteStatus::parse(&r.status)
                .ok_or(StoreError::Corrupt("phone_routes.status"))?,
            fallback_number: r.fallback_number,
            fallback_message: r.fallback_message,
            over_limit: OverLimit::parse(&r.over_limit)
                .ok_or(StoreError::Corrupt("phone_routes.over_limit"))?,
            max_concurrent_calls: r.max_concurrent_calls,
            test_callers: serde_json::from_str(&r.test_callers)
                .map_err(|_| StoreError::Corrupt("phone_routes.test_callers"))?,
            recording_policy: match r.recording_policy.as_deref() {
                Some(p) => Some(
                    crate::recording::RecordingPolicy::parse(p)
                        .ok_or(StoreError::Corrupt("phone_routes.recording_policy"))?,
                ),
                None => None,
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

fn unique_number(e: StoreError) -> StoreError {
    if e.is_unique_violation() {
        StoreError::Conflict("number")
    } else {
        e
    }
}

impl Store {
    /// Inserts a route and its audit row; `Conflict("number")` when the number is taken.
    pub async fn insert_route(
        &self,
        route: &PhoneRoute,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let result: Result<(), StoreError> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO phone_routes ({ROUTE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            )))
            .bind(route.id.as_str())
            .bind(route.tenant_id.as_str())
            .bind(&route.number)
            .bind(&route.agent_key)
            .bind(route.direction.as_str())
            .bind(route.status.as_str())
            .bind(&route.fallback_number)
            .bind(&route.fallback_message)
            .bind(route.over_limit.as_str())
            .bind(route.max_concurrent_calls)
            .bind(serde_json::to_string(&route.test_callers).unwrap_or_else(|_| "[]".into()))
            .bind(route.recording_policy.map(crate::recording::RecordingPolicy::as_str))
            .bind(route.created_at)
            .bind(route.updated_at)
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(())
        }.await);
        result.map_err(unique_number)
    }

    /// Writes every field of a route (matched by id) and its audit row.
    pub async fn update_route(
        &self,
        route: &PhoneRoute,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let result: Result<(), StoreError> = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE phone_routes SET number = $2, agent_key = $3, direction = $4, status = $5, \
                 fallback_number = $6, fallback_message = $7, over_limit = $8, max_concurrent_calls = $9, \
                 test_callers = $10, updated_at = $11, recording_policy = $12 WHERE id = $1",
            )
            .bind(route.id.as_str())
            .bind(&route.number)
            .bind(&route.agent_key)
            .bind(route.direction.as_str())
            .bind(route.status.as_str())
            .bind(&route.fallback_number)
            .bind(&route.fallback_message)
            .bind(route.over_limit.as_str())
            .bind(route.max_concurrent_calls)
            .bind(serde_json::to_string(&route.test_callers).unwrap_or_else(|_| "[]".into()))
            .bind(route.updated_at)
            .bind(route.recording_policy.map(crate::recording::RecordingPolicy::as_str))
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, audit)?;
            tx.commit().await?;
            Ok(())
        }.await);
        result.map_err(unique_number)
    }

    /// Deletes a route and writes its audit row. Returns false when it did not exist.
    pub async fn delete_route(&self, id: &RouteId, audit: &NewAudit) -> Result<bool, StoreError> {
        let deleted = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let res = sqlx::query("DELETE FROM phone_routes WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            let deleted = res.rows_affected() == 1;
            if deleted {
                insert_audit!(&mut *tx, audit)?;
            }
            tx.commit().await?;
            deleted
        });
        Ok(deleted)
    }

    /// Reads a route.
    pub async fn get_route(&self, id: &RouteId) -> Result<Option<PhoneRoute>, StoreError> {
        let row: Option<RouteRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ROUTE_COLUMNS} FROM phone_routes WHERE id = $1")))
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        row.map(PhoneRoute::try_from).transpose()
    }

    /// Finds the route of a number.
    pub async fn route_by_number(&self, number: &str) -> Result<Option<PhoneRoute>, StoreError> {
        let row: Option<RouteRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {ROUTE_COLUMNS} FROM phone_routes WHERE number = $1")))
                .bind(number)
                .fetch_optional(pool)
                .await?
        });
        row.map(PhoneRoute::try_from).transpose()
    }

    /// The tenant's first route that can place outbound calls (oldest first).
    pub async fn outbound_route(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<PhoneRoute>, StoreError> {
        let row: Option<RouteRow> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ROUTE_COLUMNS} FROM phone_routes WHERE tenant_id = $1 AND direction IN ('outbound', 'both') \
                 ORDER BY created_at, id LIMIT 1"
            )))
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(PhoneRoute::try_from).transpose()
    }

    /// Lists routes, optionally of one tenant, oldest first.
    pub async fn list_routes(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
        offset: u32,
    ) -> Result<Page<PhoneRoute>, StoreError> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        let (rows, total): (Vec<RouteRow>, i64) = on_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ROUTE_COLUMNS} FROM phone_routes WHERE ($1 IS NULL OR tenant_id = $1) \
                 ORDER BY created_at, id LIMIT $2 OFFSET $3"
            )))
            .bind(&tenant)
            .bind(as_i64(limit))
            .bind(as_i64(offset))
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM phone_routes WHERE ($1 IS NULL OR tenant_id = $1)")
                .bind(&tenant)
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        Ok(Page {
            items: rows
                .into_iter()
                .map(PhoneRoute::try_from)
                .collect::<Result<_, _>>()?,
            total,
        })
    }
}
