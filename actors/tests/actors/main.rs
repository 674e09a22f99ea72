//! Actor-level tests: the tree started with a real SQLite store and a scripted carrier,
//! driven by message and through the shared handles (`Actors`), without HTTP.

mod support;

mod placement;
mod predial;
mod router;
mod supervision;
mod tenant;
