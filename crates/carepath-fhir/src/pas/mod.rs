//! Da Vinci PAS: request and inquiry Bundles read into the application's commands,
//! cases written back as PAS responses. Pure: no I/O, no clock.

pub mod inquiry;
pub mod request;
pub mod response;

pub use inquiry::{Inquiry, inquiry};
pub use request::{ClaimIdentifier, FieldMap, PasSubmission, submission};
pub use response::{ReviewAction, claim_response, response_bundle, review_action};
