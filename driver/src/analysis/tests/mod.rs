//! Tests of the whole analyzer: a table-driven corpus of statements with
//! their expected analysis or refusal, and properties over arbitrary text.

mod corpus;
mod properties;
mod result_columns;
#[cfg(feature = "pg-parser")]
mod second_opinion;
mod session_control;
