//! carepath's FHIR R4 door: the Da Vinci prior-authorization APIs over HTTP:
//! coverage requirements discovery over CDS Hooks (CRD), documentation templates
//! (DTR `$questionnaire-package`), PAS (`$submit`, `$inquire`, subscriptions), and
//! SMART backend-services authorization.
//!
//! Like the gRPC door, it converts and calls the application layer
//! (`carepath-app`): it decides nothing, authorizes nothing beyond checking that a
//! token carries the scope an interaction needs, and stores nothing itself.
//!
//! - [`json`]: reading FHIR JSON with the FHIRPath of every element;
//! - [`crd`]: CDS Hooks calls to coverage requests, assertions to cards (pure);
//! - [`dtr`]: rule forms as Questionnaires, `$questionnaire-package` (pure);
//! - [`pas`]: PAS Bundles to commands and cases to PAS responses (pure);
//! - [`outcome`]: errors as OperationOutcomes;
//! - [`capability`]: the CapabilityStatement and SMART configuration;
//! - [`subscription`]: FHIR Subscriptions and their notifications (pure);
//! - [`http`]: the axum router and the server;
//! - [`listen`]: the bounds on connections.

pub mod capability;
pub mod codes;
pub mod crd;
pub mod dtr;
pub mod http;
pub mod json;
pub mod listen;
pub mod outcome;
pub mod pas;
pub mod subscription;

pub use http::{FhirDoor, router, serve};
