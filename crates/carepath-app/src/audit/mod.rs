//! audit use cases.
