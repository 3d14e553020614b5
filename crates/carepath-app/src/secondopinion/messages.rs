//! Secure messages on a request between the member, the lead physician and the
//! nurse coordinators.

use carepath_core::EventDraft;
use carepath_secondopinion::check_text;
use carepath_store::{AuditOutcome, OpinionMessageRecord};

use super::{MESSAGE_KIND, SecondOpinion};
use crate::{
    context::{Caller, Page, PageRequest, Rows, visible_page},
    error::AppResult,
    pipeline::{append_events, record_id},
};

impl SecondOpinion {
    /// Posts a secure message on a request.
    pub async fn post_message(
        &self,
        caller: &Caller,
        request_id: &str,
        body: &str,
    ) -> AppResult<OpinionMessageRecord> {
        check_text("body", body)?;
        let id = record_id(request_id, "request_id")?;
        let (request, _) = self.visible(caller, &id).await?;
        let now = self.app.stored_now();
        let message = OpinionMessageRecord {
            id: format!("MSG-{}", uuid::Uuid::now_v7().simple()),
            request_id: id.clone(),
            author_role: caller.actor.role.to_string(),
            author_id: caller.actor.subject.clone(),
            body: body.trim().to_owned(),
            sent_at: now,
        };
        let event = EventDraft {
            kind: carepath_secondopinion::event_kinds::MESSAGE_POSTED,
            aggregate_kind: carepath_secondopinion::AGGREGATE_KIND,
            aggregate_id: request.id.clone(),
            member_id: request.member_id.clone(),
            occurred_at: now,
            payload: serde_json::json!({
                "request_id": request.id,
                "condition": request.condition,
                "message_id": message.id,
                "author_role": message.author_role,
            }),
        };
        let mut tx = self.app.store.begin().await?;
        tx.insert_opinion_message(&message).await?;
        append_events(&mut tx, vec![event]).await?;
        tx.append_audit(
            &caller.audit_entry(
                MESSAGE_KIND,
                &message.id,
                Some(&request.member_id),
                AuditOutcome::Allowed,
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(message)
    }

    /// One page of a request's secure messages, oldest first.
    pub async fn list_messages(
        &self,
        caller: &Caller,
        request_id: &str,
        page: PageRequest,
    ) -> AppResult<Page<OpinionMessageRecord>> {
        let size = page.checked_size("page.page_size")?;
        let id = record_id(request_id, "request_id")?;
        let (request, _) = self.visible(caller, &id).await?;
        let store = &self.app.store;
        let found = visible_page(
            &page.token,
            size,
            |token| {
                let id = &id;
                async move { store.list_opinion_messages(id, &token, size).await }
            },
            |message| Ok(Some(message.clone())),
            Rows {
                key: OpinionMessageRecord::page_token,
                weight: OpinionMessageRecord::stored_bytes,
            },
        )
        .await?;
        self.app
            .audit(
                caller,
                MESSAGE_KIND,
                &id,
                Some(&request.member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(found)
    }
}
