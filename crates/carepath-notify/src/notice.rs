//! The notices this crate plans, renders and delivers: who they are for, where they go,
//! and the key that makes each one unique.

use std::fmt;

use carepath_core::{Address, ContactChannel, LanguageTag, Member, Provider, Staff};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who a notice is for, as the rules name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientRole {
    /// The provider who asked for the service (payload `requesting_provider_npi`).
    RequestingProvider,
    /// The provider who will perform it (payload `servicing_provider_npi`).
    ServicingProvider,
    /// The member the event concerns (`DomainEvent::member_id`).
    Member,
    /// The member's own doctor, who may be outside the directory (payload `doctor`).
    MemberDoctor,
    /// The plan's nurse (payload `nurse_id`); staff have no outside contact details,
    /// so they are only ever notified in the portal work queue.
    Nurse,
}

impl RecipientRole {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientRole::RequestingProvider => "requesting_provider",
            RecipientRole::ServicingProvider => "servicing_provider",
            RecipientRole::Member => "member",
            RecipientRole::MemberDoctor => "member_doctor",
            RecipientRole::Nurse => "nurse",
        }
    }
}

impl fmt::Display for RecipientRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recipient with the contact details planning chooses a channel from.
///
/// Built from a directory record, or from the contact a payload carries for a doctor
/// the plan does not know; `id` is what idempotency keys and portal inboxes hang on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// `member:M100001`, `provider:1234567893`, `staff:RN-001`, or `contact:<hash>`
    /// for a doctor outside the directory (the hash of the contact details, so the
    /// same doctor gets the same id on every redelivery).
    pub id: String,
    pub role: RecipientRole,
    pub name: String,
    /// `None` when the recipient has not said; the rules' default language is used.
    pub language: Option<LanguageTag>,
    pub preferred_channel: Option<ContactChannel>,
    pub email: Option<String>,
    pub fax: Option<String>,
    pub address: Option<Address>,
    /// Whether the recipient can sign in to read notices (members, directory
    /// providers and staff can; a doctor known only from a payload cannot).
    pub has_portal: bool,
}

impl Recipient {
    /// A member, reachable by mail, email (if given) and the member portal.
    pub fn member(member: &Member) -> Self {
        Self {
            id: format!("member:{}", member.id),
            role: RecipientRole::Member,
            name: format!("{} {}", member.first_name, member.last_name),
            language: Some(member.language.clone()),
            preferred_channel: Some(member.preferred_channel),
            email: member.email.clone(),
            fax: None,
            address: Some(member.address.clone()),
            has_portal: true,
        }
    }

    /// A directory provider in `role`. Providers list the languages they speak; the
    /// first is taken as the one to write to them in.
    pub fn provider(role: RecipientRole, provider: &Provider) -> Self {
        Self {
            id: format!("provider:{}", provider.npi),
            role,
            name: provider.name.clone(),
            language: provider.languages.first().cloned(),
            preferred_channel: Some(provider.preferred_channel),
            email: provider.email.clone(),
            fax: provider.fax.clone(),
            address: Some(provider.address.clone()),
            has_portal: true,
        }
    }

    /// A staff member, reachable only through the portal work queue.
    pub fn staff(staff: &Staff) -> Self {
        Self {
            id: format!("staff:{}", staff.id),
            role: RecipientRole::Nurse,
            name: staff.name.clone(),
            language: staff.languages.first().cloned(),
            preferred_channel: Some(ContactChannel::Portal),
            email: None,
            fax: None,
            address: None,
            has_portal: true,
        }
    }

    /// Where a notice on `channel` would go, or `None` when the recipient lacks the
    /// detail that channel needs (no fax number, no street address, ...).
    pub fn destination(&self, channel: ContactChannel) -> Option<Destination> {
        match channel {
            ContactChannel::Email => self
                .email
                .clone()
                .map(|address| Destination::Email { address }),
            ContactChannel::Fax => self.fax.clone().map(|number| Destination::Fax { number }),
            ContactChannel::Mail => self
                .address
                .clone()
                .filter(|a| !a.lines.is_empty())
                .map(|address| Destination::Mail { address }),
            ContactChannel::Portal => self.has_portal.then(|| Destination::Portal {
                inbox: self.id.clone(),
            }),
        }
    }
}

/// Where one notice goes; the channel is implied by the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum Destination {
    Email {
        address: String,
    },
    Fax {
        number: String,
    },
    Mail {
        address: Address,
    },
    /// The recipient's inbox in the portal: their recipient id.
    Portal {
        inbox: String,
    },
}

impl Destination {
    pub fn channel(&self) -> ContactChannel {
        match self {
            Destination::Email { .. } => ContactChannel::Email,
            Destination::Fax { .. } => ContactChannel::Fax,
            Destination::Mail { .. } => ContactChannel::Mail,
            Destination::Portal { .. } => ContactChannel::Portal,
        }
    }
}

/// The idempotency key of a notice: 32 hex digits of SHA-256 over the event id, the
/// recipient id, the channel and the template id.
///
/// A redelivered event plans the same notices with the same keys, so storing notices
/// under a unique key (and passing the key on to gateways) means nothing is sent
/// twice. The template *version* is left out on purpose: a template published between
/// two deliveries of one event must not produce a second letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NoticeKey(String);

impl NoticeKey {
    /// Derives the key; the parts are length-prefixed so no two part lists collide.
    pub fn derive(event_id: &str, recipient_id: &str, channel: &str, template: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"carepath-notice-v1");
        for part in [event_id, recipient_id, channel, template] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        Self(hex::encode(&digest[..16]))
    }

    /// Takes a key read back from storage as it is.
    pub fn from_stored(key: String) -> Self {
        Self(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NoticeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How soon a notice should go out, for ordering a dispatcher's queue.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Someone is waiting on it to act (an approval lets services be scheduled).
    Immediate,
    #[default]
    Normal,
}

/// One notice an event calls for, decided but not yet rendered.
///
/// Everything rendering needs is in here, so a dispatcher can store it and render
/// later (or again) without the event or the directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedNotice {
    pub key: NoticeKey,
    pub event_id: String,
    pub event_kind: String,
    /// The rule that called for it, and the version of the rules file, so every notice
    /// can be explained.
    pub rule_id: String,
    pub rules_version: String,
    pub template: String,
    pub channel: ContactChannel,
    pub destination: Destination,
    pub priority: Priority,
    pub recipient: Recipient,
    /// The language asked for; rendering falls back when no template has it.
    pub language: LanguageTag,
    /// The day the event happened (UTC), which picks the template version in effect.
    pub event_date: NaiveDate,
    /// The data templates see (see the crate docs for its shape).
    pub context: serde_json::Value,
}

/// A recipient a rule called for who cannot be reached on any allowed channel, or who
/// is not in the directory. Recorded so the failure is visible rather than silent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreachable {
    /// Derived like a notice key with the channel `none`, so recording it is
    /// idempotent too.
    pub key: NoticeKey,
    pub event_id: String,
    pub rule_id: String,
    pub template: String,
    pub role: RecipientRole,
    /// The recipient id when it is known (`provider:...`), else the role.
    pub recipient: String,
    pub reason: String,
}

/// One block of a rendered notice body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "text", rename_all = "snake_case")]
pub enum Block {
    /// A section heading (a template line starting with `## `).
    Heading(String),
    /// A running paragraph (consecutive template lines, joined).
    Paragraph(String),
    /// A list item (a template line starting with `- `).
    Bullet(String),
}

/// The plan as sender: the letterhead, and the contact details templates quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    pub name: String,
    #[serde(default)]
    pub department: Option<String>,
    /// Return address lines, printed in the letterhead.
    pub address: Vec<String>,
    /// The number members and providers call about a notice.
    pub phone: String,
    #[serde(default)]
    pub tty: Option<String>,
    #[serde(default)]
    pub fax: Option<String>,
    #[serde(default)]
    pub website: Option<String>,
    /// Where written appeals go.
    #[serde(default)]
    pub appeals_address: Vec<String>,
    /// The number for a peer-to-peer discussion with a physician reviewer.
    #[serde(default)]
    pub peer_to_peer_phone: Option<String>,
}

/// Which template produced a notice, for explaining and reproducing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateUsed {
    pub id: String,
    pub version: u32,
    /// The language actually used (may differ from the one asked for).
    pub language: LanguageTag,
    /// The file the body came from, relative to the templates folder.
    pub file: String,
}

/// A notice ready for a channel: its final words and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedNotice {
    pub key: NoticeKey,
    pub channel: ContactChannel,
    pub destination: Destination,
    pub recipient_name: String,
    pub template: TemplateUsed,
    /// The date the notice bears.
    pub date: NaiveDate,
    pub sender: Sender,
    pub subject: String,
    pub body: Vec<Block>,
    /// An HTML alternative for email, when the template has one.
    pub html: Option<String>,
}

impl RenderedNotice {
    /// The body as plain text: blocks separated by blank lines, list items together.
    pub fn text_body(&self) -> String {
        let mut out = String::new();
        let mut previous_was_bullet = false;
        for block in &self.body {
            let is_bullet = matches!(block, Block::Bullet(_));
            if !out.is_empty() {
                out.push_str(if is_bullet && previous_was_bullet {
                    "\n"
                } else {
                    "\n\n"
                });
            }
            match block {
                Block::Heading(t) | Block::Paragraph(t) => out.push_str(t),
                Block::Bullet(t) => {
                    out.push_str("- ");
                    out.push_str(t);
                }
            }
            previous_was_bullet = is_bullet;
        }
        out.push('\n');
        out
    }
}

/// Splits rendered template text into blocks: `## ` starts a heading, `- ` a list item
/// (indented lines continue it), a blank line ends a paragraph, other lines join into
/// the running paragraph.
pub(crate) fn parse_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    let flush = |current: &mut Option<Block>, blocks: &mut Vec<Block>| {
        if let Some(b) = current.take() {
            blocks.push(b);
        }
    };
    for raw in text.lines() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            flush(&mut current, &mut blocks);
        } else if let Some(h) = trimmed.strip_prefix("## ") {
            flush(&mut current, &mut blocks);
            blocks.push(Block::Heading(h.trim().to_owned()));
        } else if let Some(item) = trimmed.strip_prefix("- ") {
            flush(&mut current, &mut blocks);
            current = Some(Block::Bullet(item.trim().to_owned()));
        } else {
            match &mut current {
                Some(Block::Paragraph(t)) => {
                    t.push(' ');
                    t.push_str(trimmed);
                }
                Some(Block::Bullet(t)) if line.starts_with(' ') => {
                    t.push(' ');
                    t.push_str(trimmed);
                }
                _ => {
                    flush(&mut current, &mut blocks);
                    current = Some(Block::Paragraph(trimmed.to_owned()));
                }
            }
        }
    }
    flush(&mut current, &mut blocks);
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_distinct() {
        let a = NoticeKey::derive("e1", "member:M1", "mail", "precert-denied");
        assert_eq!(
            a,
            NoticeKey::derive("e1", "member:M1", "mail", "precert-denied")
        );
        assert_eq!(a.as_str().len(), 32);
        assert_ne!(
            a,
            NoticeKey::derive("e1", "member:M1", "email", "precert-denied")
        );
        assert_ne!(
            a,
            NoticeKey::derive("e2", "member:M1", "mail", "precert-denied")
        );
        // Length prefixes keep shifted boundaries apart.
        assert_ne!(
            NoticeKey::derive("ab", "c", "mail", "t"),
            NoticeKey::derive("a", "bc", "mail", "t")
        );
    }

    #[test]
    fn blocks_parse_headings_paragraphs_and_bullets() {
        let text = "Dear Dr. Lee,\n\n## Why\nThe request\n  was denied.\n- first item\n  continues\n- second\n\nSincerely,\n";
        let blocks = parse_blocks(text);
        assert_eq!(
            blocks,
            vec![
                Block::Paragraph("Dear Dr. Lee,".into()),
                Block::Heading("Why".into()),
                Block::Paragraph("The request was denied.".into()),
                Block::Bullet("first item continues".into()),
                Block::Bullet("second".into()),
                Block::Paragraph("Sincerely,".into()),
            ]
        );
    }
}
