//! Example programs live in this crate as `[[example]]` targets.
