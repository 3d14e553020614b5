//! Precertification use cases: requirement checks, submissions, clinical review and
//! the paths after a decision, gold cards, metrics, rule lists and the sweeps.

pub mod engine;
pub mod filing;
pub mod record;

pub use engine::{ListOrigin, PrecertEngine};
pub use record::{RECORD_KIND, case_of, queue_of, record_of, request_id_of};
