//! carepath's gRPC edge: authentication, the one error mapping, proto conversions,
//! the services, and the wiring module every binary shares.
//!
//! Handlers parse requests into domain types, check who may do what, call the domain
//! and storage crates, and convert back. Decisions are made in the domain crates, never
//! here.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod audit;
pub mod cases;
pub mod connections;
pub mod context;
pub mod convert;
pub mod directory;
mod door;
pub mod error;
pub mod metrics;
pub mod notify;
pub mod oncology;
pub mod overload;
pub mod precert;
pub mod secondopinion;
pub mod server;

pub use carepath_app::{auth, outbox};
pub use context::App;
pub use error::{ApiError, ApiResult};
pub use server::{Area, Limits, serve};
