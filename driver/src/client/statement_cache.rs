//! The per-connection statement cache: bounded (least recently used out
//! first), and holding statements of one catalog only.
//!
//! An evicted statement is closed on the server as soon as nothing else
//! holds it (tokio-postgres closes a statement when its last handle is
//! dropped), so the server's prepared statements stay bounded too. A cache
//! asked for a statement under a newer catalog than the one its statements
//! were analyzed against empties itself: those statements would all be
//! analyzed again anyway, and they would keep the old catalog alive. (A
//! statement of an older catalog, which a slower concurrent task may
//! bring, is neither cached nor empties it.)

use std::num::NonZeroUsize;
use std::sync::{Arc, Weak};

use lru::LruCache;

use super::statement::Statement;
use crate::catalog::Catalog;

/// Statements by text, at most `capacity` of them (none when it is zero).
pub(crate) struct StatementCache {
    statements: Option<LruCache<String, Statement>>,
    /// The catalog every cached statement was analyzed against.
    catalog: Weak<Catalog>,
}

impl StatementCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            statements: NonZeroUsize::new(capacity).map(LruCache::new),
            catalog: Weak::new(),
        }
    }

    /// The statement cached for `sql`, analyzed against `catalog`. Asked
    /// under another catalog than its statements', the cache empties.
    pub(crate) fn get(&mut self, sql: &str, catalog: &Arc<Catalog>) -> Option<Statement> {
        if self.is_older(catalog) {
            return None;
        }
        self.follow(catalog);
        let statements = self.statements.as_mut()?;
        statements.get(sql).cloned()
    }

    /// Caches `statement` under its text, evicting the least recently used
    /// one when full.
    pub(crate) fn insert(&mut self, statement: Statement) {
        if self.is_older(&statement.0.catalog) {
            // Analyzed against an older catalog than the cache's (a slower
            // concurrent task): used once, not kept.
            return;
        }
        self.follow(&statement.0.catalog);
        if let Some(statements) = self.statements.as_mut() {
            statements.put(statement.0.sql.clone(), statement);
        }
    }

    /// Forgets `statement` if it is the one cached for its text (the server
    /// no longer has it, or its plan no longer fits).
    pub(crate) fn remove(&mut self, statement: &Statement) {
        let Some(statements) = self.statements.as_mut() else {
            return;
        };
        if statements
            .peek(&statement.0.sql)
            .is_some_and(|cached| Arc::ptr_eq(&cached.0, &statement.0))
        {
            statements.pop(&statement.0.sql);
        }
    }

    /// Forgets every statement.
    pub(crate) fn clear(&mut self) {
        if let Some(statements) = self.statements.as_mut() {
            statements.clear();
        }
        self.catalog = Weak::new();
    }

    /// How many statements are cached.
    pub(crate) fn len(&self) -> usize {
        self.statements.as_ref().map_or(0, LruCache::len)
    }

    /// Whether `catalog` is of an older generation than the cache's.
    fn is_older(&self, catalog: &Catalog) -> bool {
        self.catalog
            .upgrade()
            .is_some_and(|cached| catalog.generation() < cached.generation())
    }

    /// Empties the cache if its statements were analyzed against another
    /// catalog than `catalog`.
    fn follow(&mut self, catalog: &Arc<Catalog>) {
        if !std::ptr::eq(self.catalog.as_ptr(), Arc::as_ptr(catalog)) {
            self.clear();
            self.catalog = Arc::downgrade(catalog);
        }
    }
}
