//! oncology use cases.
