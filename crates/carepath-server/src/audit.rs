//! `AuditService`: the gRPC door of the audit log. Each handler converts the request,
//! calls the use case of [`carepath_app::audit`] (admins only; searches are
//! themselves audited) and converts the answer back.

use carepath_app::audit::{AuditLog, SearchAudit, Verified};
use carepath_core::MemberId;
use carepath_proto::audit::v1::{self as pb, audit_service_server::AuditService};
use carepath_store::{AuditOutcome, AuditRecord, AuditVerification};

use crate::{
    context::App,
    convert::{optional, optional_instant, timestamp},
    door::grpc_service,
    error::ApiResult,
};

/// The audit service.
#[derive(Debug, Clone)]
pub struct Audit {
    inner: AuditLog,
}

impl Audit {
    pub fn new(app: App) -> Self {
        Audit {
            inner: AuditLog::new(app),
        }
    }
}

/// The search a request asks for, every bad field named at once.
fn search_of(req: pb::SearchAuditRequest) -> ApiResult<SearchAudit> {
    let mut invalid = carepath_core::Invalid::new();
    let member = optional(&mut invalid, "member_id", &req.member_id, MemberId::parse).flatten();
    let subject = req.subject.trim();
    if subject.len() > 256 {
        invalid.push("subject", "must be at most 256 characters");
    }
    let from = optional_instant(&mut invalid, "from", req.from);
    let to = optional_instant(&mut invalid, "to", req.to);
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        invalid.push("to", "must be after `from`");
    }
    let page = req.page.unwrap_or_default();
    let after = match page.page_token.as_str() {
        "" => 0,
        token => token.parse::<i64>().unwrap_or_else(|_| {
            invalid.push("page.page_token", "is not a token this service issued");
            0
        }),
    };
    invalid.into_result()?;
    Ok(SearchAudit {
        member,
        subject: (!subject.is_empty()).then(|| subject.to_owned()),
        from,
        to,
        after,
        size: page.page_size,
    })
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
        repeats: e.repeats,
    }
}

fn verification_to_proto(v: Verified) -> pb::VerifyAuditResponse {
    let anchors_checked = i64::try_from(v.anchors).unwrap_or(i64::MAX);
    match v.verdict {
        AuditVerification::Intact { entries } => pb::VerifyAuditResponse {
            intact: true,
            entries,
            anchors_checked,
            ..Default::default()
        },
        AuditVerification::Broken { seq, reason } => pb::VerifyAuditResponse {
            intact: false,
            broken_at_seq: seq,
            reason,
            anchors_checked,
            ..Default::default()
        },
    }
}

grpc_service! {
    impl AuditService for Audit {
        rpc search_audit(request: pb::SearchAuditRequest) -> pb::SearchAuditResponse as |this, caller| {
            let cmd = search_of(request.into_inner())?;
            let page = this.inner.search(&caller, cmd).await?;
            Ok(pb::SearchAuditResponse {
                entries: page.items.into_iter().map(entry_to_proto).collect(),
                next_page_token: page.next_page_token,
            })
        }

        rpc verify_audit(request: pb::VerifyAuditRequest) -> pb::VerifyAuditResponse as |this, caller| {
            let verification = this.inner.verify(&caller).await?;
            Ok(verification_to_proto(verification))
        }
    }
}
