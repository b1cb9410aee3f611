//! Column master key stores for aepg.
