//! What every handler needs: the shared application state, who is calling, and the
//! audit trail of member data access.

use std::sync::Arc;

use carepath_core::{Actor, BusinessCalendar, Clock, MemberId};
use carepath_store::{AuditEntry, AuditOutcome, Store};
use chrono::{DateTime, Utc};
use tonic::Request;

use crate::{
    auth::{AuthError, Authenticator},
    error::{ApiError, ApiResult},
    overload::CallerLimiter,
};

/// State shared by every service of a server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    pub store: Store,
    /// The only source of "now" for handlers, so tests can move time.
    pub clock: Arc<dyn Clock>,
    pub calendar: Arc<BusinessCalendar>,
    pub auth: Arc<Authenticator>,
}

impl App {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Records an access to a member's data. For reads this runs before the answer
    /// leaves; a failure to audit fails the call, so no read goes unrecorded.
    pub async fn audit(
        &self,
        caller: &Caller,
        record_kind: &str,
        record_id: &str,
        member: Option<&MemberId>,
        outcome: AuditOutcome,
    ) -> ApiResult<()> {
        self.store
            .audit(
                &caller.audit_entry(record_kind, record_id, member, outcome),
                self.now(),
            )
            .await?;
        Ok(())
    }

    /// Audits a refused access and returns the error to send: callers not entitled to
    /// a record learn nothing about it.
    pub async fn refuse(
        &self,
        caller: &Caller,
        record_kind: &'static str,
        record_id: &str,
        member: Option<&MemberId>,
        err: ApiError,
    ) -> ApiError {
        if let Err(audit_err) = self
            .audit(caller, record_kind, record_id, member, AuditOutcome::Denied)
            .await
        {
            return audit_err;
        }
        err
    }
}

/// The full gRPC method of the current call, put in the request extensions by the
/// server's request layer.
#[derive(Debug, Clone)]
pub struct RpcMethod(pub String);

/// Who is calling and through which RPC.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub rpc: String,
}

impl Caller {
    /// Reads the authenticated actor (set by the authentication interceptor).
    pub fn of<T>(request: &Request<T>) -> ApiResult<Caller> {
        let actor = request
            .extensions()
            .get::<Actor>()
            .cloned()
            .ok_or(ApiError::Unauthenticated(AuthError::Missing))?;
        let rpc = request
            .extensions()
            .get::<RpcMethod>()
            .map(|m| m.0.clone())
            .unwrap_or_default();
        Ok(Caller { actor, rpc })
    }

    pub fn audit_entry(
        &self,
        record_kind: &str,
        record_id: &str,
        member: Option<&MemberId>,
        outcome: AuditOutcome,
    ) -> AuditEntry {
        AuditEntry {
            subject: self.actor.subject.clone(),
            role: self.actor.role.as_str().to_owned(),
            rpc: self.rpc.clone(),
            record_kind: record_kind.to_owned(),
            record_id: record_id.to_owned(),
            member_id: member.map(|m| m.as_str().to_owned()),
            outcome,
        }
    }
}

/// The authentication interceptor: every call of a wrapped service must carry a valid
/// bearer token; the actor it names is put in the request extensions. With a caller
/// limiter, each authenticated call is also taken from its caller's token bucket.
#[derive(Debug, Clone)]
pub struct Authenticate {
    auth: Arc<Authenticator>,
    callers: Option<Arc<CallerLimiter>>,
}

impl Authenticate {
    pub fn new(auth: Arc<Authenticator>, callers: Option<Arc<CallerLimiter>>) -> Self {
        Authenticate { auth, callers }
    }
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match self.auth.authenticate(header) {
            Ok(actor) => {
                tracing::debug!(role = actor.role.as_str(), "authenticated");
                if let Some(callers) = &self.callers {
                    callers.check(&actor).inspect_err(|_| {
                        tracing::debug!(
                            role = actor.role.as_str(),
                            "call refused: caller over its rate limit"
                        );
                    })?;
                }
                request.extensions_mut().insert(actor);
                Ok(request)
            }
            Err(e) => {
                tracing::info!(reason = %e, "unauthenticated call refused");
                Err(ApiError::Unauthenticated(e).into())
            }
        }
    }
}

/// Page size bounds shared by every list RPC.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// Reads a page request: size 0 means the default; above the maximum is an error
/// naming the field.
pub fn page_size(requested: u32, field: &str) -> ApiResult<u32> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n > MAX_PAGE_SIZE => Err(ApiError::field(
            field,
            format!("must be at most {MAX_PAGE_SIZE}"),
        )),
        n => Ok(n),
    }
}

/// One page of a list held in memory, ordered by `key`: the items whose key sorts
/// after `token` (all of them for an empty token), at most `size`, and the token of
/// the next page (empty on the last page).
pub fn page_in_memory<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    token: &str,
    size: u32,
) -> (Vec<T>, String) {
    items.sort_by_cached_key(&key);
    let mut page: Vec<T> = items
        .into_iter()
        .filter(|item| token.is_empty() || key(item).as_str() > token)
        .take(size as usize + 1)
        .collect();
    let next = if page.len() > size as usize {
        page.truncate(size as usize);
        page.last().map(&key).unwrap_or_default()
    } else {
        String::new()
    };
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_pages_cover_the_list_once_in_order() {
        let items = vec!["d", "a", "c", "b", "e"];
        let key = |s: &&str| (*s).to_owned();
        let (first, token) = page_in_memory(items.clone(), key, "", 2);
        assert_eq!((first, token.as_str()), (vec!["a", "b"], "b"));
        let (second, token) = page_in_memory(items.clone(), key, &token, 2);
        assert_eq!((second, token.as_str()), (vec!["c", "d"], "d"));
        let (last, token) = page_in_memory(items, key, &token, 2);
        assert_eq!((last, token.as_str()), (vec!["e"], ""));
    }
}
