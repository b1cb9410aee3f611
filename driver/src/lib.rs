//! aepg: client-side column encryption for PostgreSQL.
