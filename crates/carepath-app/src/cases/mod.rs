//! cases use cases.
