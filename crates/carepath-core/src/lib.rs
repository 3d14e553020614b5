//! carepath's shared vocabulary: validated codes and ids, the directory (plans,
//! members, providers, staff), actors, the business calendar, the clock and domain
//! events.
//!
//! Everything here is pure and synchronous: no I/O beyond parsing text it is handed,
//! and no wall-clock reads outside [`SystemClock`]. Services build on these types; the
//! gRPC edge converts to and from them.

mod actor;
mod calendar;
mod clock;
mod codes;
mod directory;
mod event;
mod federal;
mod invalid;

pub use actor::{Actor, Role, Setting, Urgency};
pub use calendar::{BusinessCalendar, CalendarError};
pub use clock::{Clock, FixedClock, SystemClock};
pub use codes::{
    CodeError, CountryCode, Icd10Code, LanguageTag, MemberId, Npi, PlanId, ServiceCode,
    ServiceCodeKind, Specialty, StaffId,
};
pub use directory::{
    Address, ContactChannel, DEMO_DIRECTORY_JSON, DirectoryBundle, DirectoryError, Member,
    NetworkStatus, Plan, Provider, ProviderKind, Staff, StaffRole,
};
pub use event::{DomainEvent, EventDraft, EventKind};
pub use invalid::{FieldViolation, Invalid, MAX_DESCRIPTION, MAX_FIELD_PATH, MAX_VIOLATIONS, clip};
