//! The channels notices leave by, behind one async trait, and the errors that tell a
//! dispatcher whether trying again can help.
//!
//! The receipt and the error are always here, since the retry policy reads them; the
//! adapters and the registry come with the `channels` feature (on by default).

#[cfg(feature = "channels")]
mod email;
#[cfg(feature = "channels")]
mod fax;
#[cfg(feature = "channels")]
mod mail;
#[cfg(feature = "channels")]
mod portal;
#[cfg(feature = "channels")]
mod registry;

use std::fmt;

use carepath_core::ContactChannel;
use serde::{Deserialize, Serialize};

#[cfg(feature = "channels")]
pub use {
    email::{EmailChannel, EmailSettings, SmtpCredentials, TlsMode},
    fax::{FaxChannel, FaxSettings},
    mail::{MailChannel, MailSettings, ManifestEntry},
    portal::PortalChannel,
    registry::{Channel, Channels},
};

/// Proof that a channel accepted a notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReceipt {
    pub channel: ContactChannel,
    /// The channel's own reference: the email Message-ID, the fax gateway's job id, the
    /// letter's file name in the print batch, or the portal inbox.
    pub reference: String,
    /// What the far end said, for the delivery record (an SMTP reply, the gateway's
    /// JSON answer).
    pub detail: Option<String>,
}

/// Why a delivery failed, split by whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The far end was unreachable or busy (connection refused, timeout, SMTP 4xx,
    /// HTTP 5xx): retry later.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The far end refused this notice (bad address, HTTP 4xx, SMTP 5xx) or the
    /// notice cannot be sent on this channel: retrying will not help.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl ChannelError {
    pub fn retryable(reason: impl fmt::Display) -> Self {
        Self::Retryable(reason.to_string())
    }

    pub fn permanent(reason: impl fmt::Display) -> Self {
        Self::Permanent(reason.to_string())
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}
