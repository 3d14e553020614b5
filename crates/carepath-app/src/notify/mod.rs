//! notify use cases.
