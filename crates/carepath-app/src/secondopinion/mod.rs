//! secondopinion use cases.
