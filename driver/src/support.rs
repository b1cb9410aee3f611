//! Small helpers the layers share, written once.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::catalog::CatalogError;

/// Locks `mutex`, also when a thread panicked while holding it. Every
/// critical section in aepg is one assignment or one map operation, so a
/// poisoned value is still consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`lock`] for reading a `RwLock`.
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`lock`] for writing a `RwLock`.
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Tries `attempt` on each item in order and returns the first success, or
/// the last failure (`none()` when there are no items). A column key has
/// one or two wrapped values, and any of them may open it or vouch for a
/// record signed under it.
pub(crate) async fn first_ok<I, T, E, F, Fut>(
    items: I,
    none: impl FnOnce() -> E,
    mut attempt: F,
) -> Result<T, E>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut last = None;
    for item in items {
        match attempt(item).await {
            Ok(value) => return Ok(value),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(none))
}

/// A catalog id (a positive `integer` column) as the `u32` records carry.
pub(crate) fn id_from_sql(value: i32, what: &'static str) -> Result<u32, CatalogError> {
    u32::try_from(value).map_err(|_| CatalogError::IdOutOfRange {
        what,
        value: i64::from(value),
    })
}

/// A `u32` id as the `integer` column that stores it.
pub(crate) fn id_to_sql(value: u32, what: &'static str) -> Result<i32, CatalogError> {
    i32::try_from(value).map_err(|_| CatalogError::IdOutOfRange {
        what,
        value: i64::from(value),
    })
}

/// A generation (a positive `bigint` column) as a `u64`.
pub(crate) fn generation_from_sql(value: i64) -> Result<u64, CatalogError> {
    u64::try_from(value).map_err(|_| CatalogError::IdOutOfRange {
        what: "catalog generation",
        value,
    })
}

/// A generation as the `bigint` column that stores it.
pub(crate) fn generation_to_sql(value: u64) -> Result<i64, CatalogError> {
    i64::try_from(value).map_err(|_| CatalogError::IdOutOfRange {
        what: "catalog generation",
        value: i64::MAX,
    })
}
