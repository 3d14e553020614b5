//! The portal channel: the notice is read by its recipient through the API.
//!
//! There is nothing to transmit. The dispatcher's stored notice row (keyed by the
//! notice key, holding the rendered subject and body and the recipient id from
//! [`Destination::Portal`]) *is* the recipient's inbox entry, and the
//! `NotificationService` lists it to them. Delivering therefore succeeds at once,
//! with the inbox as the reference; it is a channel so that planning, retries and
//! delivery records treat every notice alike.

use async_trait::async_trait;
use carepath_core::ContactChannel;

use super::registry::expect_channel;
use super::{Channel, ChannelError, DeliveryReceipt};
use crate::notice::{Destination, RenderedNotice};

/// Marks portal notices delivered; the stored notice is what the recipient reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct PortalChannel;

#[async_trait]
impl Channel for PortalChannel {
    fn kind(&self) -> ContactChannel {
        ContactChannel::Portal
    }

    async fn deliver(&self, notice: &RenderedNotice) -> Result<DeliveryReceipt, ChannelError> {
        expect_channel(ContactChannel::Portal, notice)?;
        let Destination::Portal { inbox } = &notice.destination else {
            return Err(ChannelError::permanent("portal notice without an inbox"));
        };
        Ok(DeliveryReceipt {
            channel: ContactChannel::Portal,
            reference: inbox.clone(),
            detail: Some("available in the portal inbox".into()),
        })
    }
}
