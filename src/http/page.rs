//! The list shapes of the API: [`Page`] (`{data, limit, offset, total}`) for listings that
//! page with `limit`/`offset`, and [`List`] (`{data}`) for short, unpaged ones.

use serde::Serialize;
use utoipa::ToSchema;

use super::filters::Paging;

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The rows of this page.
    pub data: Vec<T>,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u32,
    /// Rows matching, across pages.
    pub total: i64,
}

impl<T> Page<T> {
    /// A page of `items` (already converted) at `paging`, out of `total`.
    pub fn new(items: impl IntoIterator<Item = T>, paging: Paging, total: i64) -> Self {
        Self {
            data: items.into_iter().collect(),
            limit: paging.limit,
            offset: paging.offset,
            total,
        }
    }
}

/// A short listing, whole.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    /// The rows.
    pub data: Vec<T>,
}

impl<T> List<T> {
    /// The listing of `items`.
    pub fn new(items: impl IntoIterator<Item = T>) -> Self {
        Self {
            data: items.into_iter().collect(),
        }
    }
}
