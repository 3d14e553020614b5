//! carepath's application layer: every use case of every area as plain async Rust
//! over domain types.
//!
//! The doors (the gRPC server, the FHIR API) convert what arrives into the domain
//! types of [`carepath_core`] and the area crates, call a use case here, and convert
//! the answer back. Everything between is here: who may see and do what (one policy
//! per area), the one command pipeline ([`pipeline`]) that loads an aggregate, runs a
//! domain command and stores the change with its events and audit entry in one
//! transaction, the outbox consumers, the notice dispatcher and the sweeps. This
//! crate knows no protobuf and no transport.

pub mod auth;
pub mod context;
pub mod error;
pub mod jobs;
pub mod outbox;
pub mod pacing;
pub mod pipeline;
pub mod setup;

pub use context::{App, Caller, Page, PageRequest, micros, page_in_memory, page_size};
pub use error::{AppError, AppResult};
pub use pipeline::{Aggregate, Changed, Working};

pub mod audit;
pub mod cases;
pub mod data;
pub mod directory;
pub mod events;
pub mod limits;
pub mod notify;
pub mod oncology;
pub mod precert;
pub mod retention;
pub mod secondopinion;
pub mod smart;
pub mod subscriptions;
pub mod telemetry;

// Gives object_store's HTTP client (S3 record storage) TLS over the process's crypto
// provider; nothing here calls it.
use reqwest_objects as _;
