//! carepath's notices: which notices a domain event calls for, their words, and the
//! channels that carry them.
//!
//! A dispatcher (in the server) uses it in four steps, each of which it can repeat
//! safely:
//!
//! 1. **Plan** ([`NoticeRules::plan`], pure): the rules in `data/notify/rules.toml`
//!    say which recipients an event kind calls for, on which channel, with which
//!    template. Recipients come from a lookup the caller fills first
//!    ([`NoticeRules::lookups_needed`], [`ResolvedRecipients`]). Each
//!    [`PlannedNotice`] has a [`NoticeKey`] derived from the event id, recipient,
//!    channel and template, so a redelivered event plans the same keys and storing
//!    notices under a unique key means none is sent twice.
//! 2. **Render** ([`TemplateCatalog::render`], pure): templates in
//!    `data/notify/templates` are minijinja files per template version, channel and
//!    language, checked at load for the parts their notices must state (a denial's
//!    reason, criterion, appeal rights, ...).
//! 3. **Deliver** ([`Channel::deliver`]): email over SMTP, fax through an HTTP
//!    gateway, postal mail as PDF letters in a print batch, or the portal inbox. A
//!    [`ChannelError`] says whether trying again can help.
//! 4. **Retry** ([`RetryPolicy::after_failure`], pure): when to try again, and when
//!    the notice is dead and must be shown to staff.
//!
//! The template context is the event payload's fields at the top level, plus
//! `event` (`id`, `kind`, `step` = the kind's last segment, `aggregate_kind`,
//! `aggregate_id`, `occurred_at`), `member` (`id`, `first_name`, `last_name`, `name`,
//! `date_of_birth`), `recipient` (`id`, `name`, `role`), `channel`, `plan` (the
//! sender block of `catalog.toml`) and `notice` (`date`, `reference`, `language`).

mod channel;
pub mod examples;
#[cfg(feature = "channels")]
mod letter;
mod notice;
mod retry;
mod rules;
mod shipped;
mod templates;

#[cfg(feature = "channels")]
pub use channel::{
    Channel, Channels, EmailChannel, EmailSettings, FaxChannel, FaxSettings, MailChannel,
    MailSettings, ManifestEntry, PortalChannel, SmtpCredentials, TlsMode,
};
pub use channel::{ChannelError, DeliveryReceipt};
#[cfg(feature = "channels")]
pub use letter::{Letter, LetterAddress, LetterError, render_letter};
pub use notice::{
    Block, Destination, NoticeKey, PlannedNotice, Priority, Recipient, RecipientRole,
    RenderedNotice, Sender, TemplateUsed, Unreachable,
};
pub use retry::{RetryDecision, RetryPolicy};
pub use rules::{
    ChannelChoice, Lookups, NoticePlan, NoticeRule, NoticeRules, PlanError, RESERVED_CONTEXT_KEYS,
    RecipientLookup, ResolvedRecipients, RulesError, RulesErrors, SHIPPED_RULES, plan_notices,
};
pub use templates::{
    ADVERSE_EVENT_KINDS, KNOWN_PARTS, Profile, RenderError, SHIPPED_TEMPLATES, TemplateCatalog,
    TemplateError, TemplateErrors, TemplateProblem,
};
