//! The outbox consumer that turns each event into the notices it calls for: resolve
//! the recipients from the directory, plan by the rules, render, and store every
//! notice (and every recipient no channel reaches) in one transaction.
//!
//! Storing is idempotent: a notice's key is unique, and so is (event, rule,
//! recipient), so an event delivered twice adds nothing the second time.

use std::sync::Arc;

use carepath_core::{Clock, DomainEvent, Member, Provider, Staff};
use carepath_notify::{
    NoticePlan, NoticeRules, PlannedNotice, Priority, ResolvedRecipients, TemplateCatalog,
    Unreachable,
};
use carepath_store::{NewNotice, Store};
use futures::{StreamExt, future::BoxFuture};
use serde_json::json;
use tracing::Instrument;

use super::{NoticeState, destination_text, precert_payload, reads::BatchReads};
use crate::outbox::{EventHandler, Handed};

/// The consumer name deliveries are tracked under (subscribed by migration too).
pub const CONSUMER: &str = "notify";

/// Event kinds the consumer wants.
pub const PREFIXES: &[&str] = &["precert.case.", "secondopinion.", "cases.interaction."];

/// Plans, renders and stores the notices of each event.
#[derive(Debug, Clone)]
pub struct NotifyHandler {
    /// Where the directory is read and the notices stored.
    pub store: Store,
    /// The time notices are stored at.
    pub clock: Arc<dyn Clock>,
    /// Which events call for which notices, to whom, through which channel.
    pub rules: Arc<NoticeRules>,
    /// The templates notices are rendered with.
    pub catalog: Arc<TemplateCatalog>,
}

impl EventHandler for NotifyHandler {
    fn consumer(&self) -> &'static str {
        CONSUMER
    }

    fn prefixes(&self) -> &'static [&'static str] {
        PREFIXES
    }

    /// An event's notices depend on that event (and the case as it stands) alone, so
    /// several batches can be planned and stored at once, in any order.
    fn lanes(&self) -> usize {
        4
    }

    fn handle<'a>(&'a self, event: &'a DomainEvent) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.store_notices(event))
    }

    /// Each event's notices are keyed by the event, so events are independent: they
    /// are planned several at once and stored in one transaction.
    fn handle_batch<'a>(
        &'a self,
        batch: &'a [Handed<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), String>>> {
        Box::pin(self.store_batch(batch))
    }
}

/// Events planned at once: each plan is a handful of indexed reads.
const PLANNING_PARALLELISM: usize = 8;

impl NotifyHandler {
    /// Stores the notices `event` calls for.
    pub async fn store_notices(&self, event: &DomainEvent) -> Result<(), String> {
        let rows = self.prepare(&BatchReads::new(&self.store), event).await?;
        self.insert(&[rows.as_slice()]).await
    }

    /// Stores the notices of every event in one transaction, and returns one outcome
    /// per event, in order. An event that cannot be planned fails alone; if the
    /// shared transaction fails, each event is stored in its own, so one bad row
    /// does not hold back the rest of the batch. Each event is planned under its
    /// hand-off span.
    pub async fn store_batch(&self, batch: &[Handed<'_>]) -> Vec<Result<(), String>> {
        let reads = BatchReads::new(&self.store);
        // The cases the batch's notices are about, in one read.
        let cases: Vec<&str> = batch
            .iter()
            .map(|handed| handed.event)
            .filter(|event| event.kind.starts_with("precert.case.") && self.has_rules(event))
            .map(|event| event.aggregate_id.as_str())
            .collect();
        reads.read_cases(&cases).await;
        let plans: Vec<_> = batch
            .iter()
            .map(|handed| {
                let event = handed.event;
                let span = tracing::info_span!(parent: &handed.span, "event", consumer = CONSUMER, kind = %event.kind, event_id = %event.id);
                self.prepare(&reads, event).instrument(span)
            })
            .collect();
        let prepared: Vec<Result<Vec<NewNotice>, String>> = futures::stream::iter(plans)
            .buffered(PLANNING_PARALLELISM)
            .collect()
            .await;
        let ready: Vec<&[NewNotice]> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok().map(Vec::as_slice))
            .collect();
        let together = match ready.len() {
            0 => Ok(()),
            _ => self.insert(&ready).await,
        };
        let mut outcomes = Vec::with_capacity(prepared.len());
        for (handed, rows) in batch.iter().zip(prepared) {
            let event = handed.event;
            outcomes.push(match (rows, &together) {
                (Err(e), _) => Err(e),
                (Ok(_), Ok(())) => Ok(()),
                (Ok(rows), Err(_)) => {
                    let span = tracing::info_span!(parent: &handed.span, "event", consumer = CONSUMER, kind = %event.kind, event_id = %event.id);
                    self.insert(&[rows.as_slice()]).instrument(span).await
                }
            });
        }
        outcomes
    }

    /// The rows `event` calls for: its notices, rendered, and a dead row for every
    /// recipient no channel reaches. Reads only, through `reads`.
    async fn prepare(
        &self,
        reads: &BatchReads,
        event: &DomainEvent,
    ) -> Result<Vec<NewNotice>, String> {
        if !self.has_rules(event) {
            return Ok(Vec::new());
        }
        let event = if event.kind.starts_with("precert.case.") {
            precert_payload::adapt(reads, event).await?
        } else {
            event.clone()
        };
        let plan = self.plan(reads, &event).await?;
        let mut rows: Vec<NewNotice> = plan.notices.iter().map(|p| self.row(p)).collect();
        rows.extend(
            plan.unreachable
                .iter()
                .map(|u| unreachable_row(&event, &self.rules.version, u)),
        );
        Ok(rows)
    }

    /// Whether any rule calls for notices on events of `event`'s kind.
    fn has_rules(&self, event: &DomainEvent) -> bool {
        self.rules.rules.iter().any(|r| r.matches_kind(&event.kind))
    }

    /// Inserts the rows of one or more events in one transaction, with multi-row
    /// statements; a row already stored (a redelivered event) is skipped.
    async fn insert(&self, events: &[&[NewNotice]]) -> Result<(), String> {
        let count: usize = events.iter().map(|rows| rows.len()).sum();
        if count == 0 {
            return Ok(());
        }
        let rows: Vec<&NewNotice> = events.iter().flat_map(|rows| rows.iter()).collect();
        let added = self
            .store
            .store_notices(&rows, self.clock.now())
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(events = events.len(), rows = count, added, "notices stored");
        Ok(())
    }

    /// Resolves the recipients the rules need from the directory, then plans.
    async fn plan(&self, reads: &BatchReads, event: &DomainEvent) -> Result<NoticePlan, String> {
        let needed = self
            .rules
            .lookups_needed(event)
            .map_err(|e| e.to_string())?;
        let mut resolved = ResolvedRecipients::default();
        for id in &needed.members {
            if let Some(m) = reads.member(id).await.map_err(|e| e.to_string())? {
                resolved = resolved.with_member(Member::clone(&m));
            }
        }
        for npi in &needed.providers {
            if let Some(p) = reads.provider(npi).await.map_err(|e| e.to_string())? {
                resolved = resolved.with_provider(Provider::clone(&p));
            }
        }
        for id in &needed.staff {
            if let Some(s) = reads.staff(id).await.map_err(|e| e.to_string())? {
                resolved = resolved.with_staff(Staff::clone(&s));
            }
        }
        self.rules.plan(event, &resolved).map_err(|e| e.to_string())
    }

    /// The stored row of a planned notice ([`notice_row`]).
    fn row(&self, planned: &PlannedNotice) -> NewNotice {
        notice_row(&self.catalog, planned)
    }
}

/// The stored row of a planned notice: rendered now (on the event's date, so a
/// redelivery renders the same words), or kept dead with the reason when the
/// template cannot be filled. Only a notice that could not be rendered keeps its plan,
/// so that a resend renders it with the templates in force then; a rendered notice is
/// what goes out, and its plan would only double the row.
pub fn notice_row(catalog: &TemplateCatalog, planned: &PlannedNotice) -> NewNotice {
    let rendered = catalog.render(planned, planned.event_date);
    let (state, last_error, subject, template_version, language, rendered, plan) = match rendered {
        Ok(r) => (
            NoticeState::Pending,
            String::new(),
            r.subject.clone(),
            i32::try_from(r.template.version).unwrap_or(i32::MAX),
            r.template.language.to_string(),
            serde_json::to_value(&r).ok(),
            None,
        ),
        Err(e) => (
            NoticeState::Dead,
            format!("cannot render: {e}"),
            String::new(),
            0,
            planned.language.to_string(),
            None,
            serde_json::to_value(planned).ok(),
        ),
    };
    NewNotice {
        id: uuid::Uuid::now_v7().to_string(),
        idempotency_key: planned.key.to_string(),
        event_id: planned.event_id.clone(),
        event_kind: planned.event_kind.clone(),
        rule_id: planned.rule_id.clone(),
        rules_version: planned.rules_version.clone(),
        recipient_id: planned.recipient.id.clone(),
        recipient_role: planned.recipient.role.as_str().to_owned(),
        recipient_name: planned.recipient.name.clone(),
        member_id: planned
            .context
            .pointer("/member/id")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        channel: planned.channel.as_str().to_owned(),
        destination: destination_text(&planned.destination),
        template_id: planned.template.clone(),
        template_version,
        language,
        subject,
        priority: match planned.priority {
            Priority::Immediate => 0,
            Priority::Normal => 1,
        },
        planned: plan,
        rendered,
        state: state.as_str().to_owned(),
        last_error,
    }
}

/// A recipient a rule called for but no channel reaches: kept dead, so the gap shows
/// in the failed list and the delivery report instead of vanishing.
pub fn unreachable_row(event: &DomainEvent, rules_version: &str, u: &Unreachable) -> NewNotice {
    NewNotice {
        id: uuid::Uuid::now_v7().to_string(),
        idempotency_key: u.key.to_string(),
        event_id: u.event_id.clone(),
        event_kind: event.kind.clone(),
        rule_id: u.rule_id.clone(),
        rules_version: rules_version.to_owned(),
        recipient_id: u.recipient.clone(),
        recipient_role: u.role.as_str().to_owned(),
        recipient_name: String::new(),
        member_id: event.member_id.as_ref().map(|m| m.to_string()),
        channel: "none".into(),
        destination: String::new(),
        template_id: u.template.clone(),
        template_version: 0,
        language: String::new(),
        subject: String::new(),
        priority: 1,
        planned: Some(json!({ "unreachable": u })),
        rendered: None,
        state: NoticeState::Dead.as_str().to_owned(),
        last_error: format!("unreachable: {}", u.reason),
    }
}
