//! `AuditService`: admins search the audit log by member, subject and period, and
//! check its hash chain. A search reads who saw a member's data, so it is itself
//! recorded.

use carepath_core::{MemberId, Role};
use carepath_proto::audit::v1::{self as pb, audit_service_server::AuditService};
use carepath_store::{AuditOutcome, AuditQuery, AuditRecord, AuditVerification};
use tonic::{Request, Response, Status};

use crate::{
    context::{App, Caller, caller_of, page_size},
    convert::{optional, timestamp},
    error::{ApiError, ApiResult, respond},
};

/// The record kind audit searches are logged under.
const RECORD_KIND: &str = "audit_log";

#[derive(Debug, Clone)]
pub struct Audit {
    app: App,
}

impl Audit {
    pub fn new(app: App) -> Self {
        Audit { app }
    }

    fn require_admin(caller: &Caller) -> ApiResult<()> {
        if caller.actor.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::denied("only admins read the audit log"))
        }
    }

    async fn search(
        &self,
        caller: &Caller,
        req: pb::SearchAuditRequest,
    ) -> ApiResult<pb::SearchAuditResponse> {
        Self::require_admin(caller)?;
        let mut invalid = carepath_core::Invalid::new();
        let member = optional(&mut invalid, "member_id", &req.member_id, MemberId::parse).flatten();
        let subject = req.subject.trim();
        if subject.len() > 256 {
            invalid.push("subject", "must be at most 256 characters");
        }
        let from = crate::convert::optional_instant(&mut invalid, "from", req.from);
        let to = crate::convert::optional_instant(&mut invalid, "to", req.to);
        if let (Some(f), Some(t)) = (from, to)
            && t <= f
        {
            invalid.push("to", "must be after `from`");
        }
        let page = req.page.unwrap_or_default();
        let size = page_size(page.page_size, "page.page_size");
        let after = match page.page_token.as_str() {
            "" => 0,
            token => token.parse::<i64>().unwrap_or_else(|_| {
                invalid.push("page.page_token", "is not a token this service issued");
                0
            }),
        };
        invalid.into_result()?;
        let size = size?;
        let query = AuditQuery {
            member_id: member.as_ref().map(|m| m.to_string()),
            subject: (!subject.is_empty()).then(|| subject.to_owned()),
            from,
            to,
        };
        let records = self.app.store.search_audit(&query, after, size + 1).await?;
        let more = records.len() > size as usize;
        let entries: Vec<_> = records.into_iter().take(size as usize).collect();
        let next_page_token = match (more, entries.last()) {
            (true, Some(last)) => last.seq.to_string(),
            _ => String::new(),
        };
        self.app
            .audit(
                caller,
                RECORD_KIND,
                member.as_ref().map_or("*", |m| m.as_str()),
                member.as_ref(),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(pb::SearchAuditResponse {
            entries: entries.into_iter().map(entry_to_proto).collect(),
            next_page_token,
        })
    }
}

fn entry_to_proto(record: AuditRecord) -> pb::AuditEntry {
    let e = record.entry;
    pb::AuditEntry {
        seq: record.seq,
        at: Some(timestamp(record.at)),
        subject: e.subject,
        role: e.role,
        rpc: e.rpc,
        record_kind: e.record_kind,
        record_id: e.record_id,
        member_id: e.member_id.unwrap_or_default(),
        outcome: match e.outcome {
            AuditOutcome::Allowed => pb::AuditOutcome::Allowed,
            AuditOutcome::Denied => pb::AuditOutcome::Denied,
        } as i32,
        hash: record.hash,
    }
}

#[tonic::async_trait]
impl AuditService for Audit {
    async fn search_audit(
        &self,
        request: Request<pb::SearchAuditRequest>,
    ) -> Result<Response<pb::SearchAuditResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            self.search(&caller, request.into_inner()).await
        })
        .await
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        respond(async move {
            let caller = caller_of(&request)?;
            Self::require_admin(&caller)?;
            Ok(match self.app.store.verify_audit().await? {
                AuditVerification::Intact { entries } => pb::VerifyAuditResponse {
                    intact: true,
                    entries,
                    ..Default::default()
                },
                AuditVerification::Broken { seq, reason } => pb::VerifyAuditResponse {
                    intact: false,
                    broken_at_seq: seq,
                    reason,
                    ..Default::default()
                },
            })
        })
        .await
    }
}
