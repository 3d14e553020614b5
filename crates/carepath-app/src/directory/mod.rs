//! directory use cases.
