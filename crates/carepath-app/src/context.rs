//! What every use case needs: the shared state of the application, who is calling,
//! the audit trail of member data access, and paging.

use std::sync::Arc;

use carepath_core::{Actor, BusinessCalendar, Clock, MemberId};
use carepath_store::{AuditEntry, AuditOutcome, Store};
use chrono::{DateTime, Utc};

use crate::{
    audit::refusals::RefusalTally,
    auth::Authenticator,
    error::{AppError, AppResult},
};

/// State shared by every use case of every area. Cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    pub store: Store,
    /// The only source of "now" for use cases, so tests can move time.
    pub clock: Arc<dyn Clock>,
    pub calendar: Arc<BusinessCalendar>,
    /// Verifies callers' tokens (and, on the embedded default, mints them).
    pub auth: Arc<Authenticator>,
    /// Repeated refusals being counted ([`crate::audit::refusals`]).
    pub refusals: Arc<RefusalTally>,
    /// Directory records remembered for the calls that read them every time
    /// ([`crate::directory::memory`]).
    pub directory: Arc<crate::directory::memory::DirectoryMemory>,
    /// The audit log's archive and anchor file, which verification reads.
    pub outside_copies: crate::audit::OutsideCopies,
}

impl App {
    /// The clock's reading.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Who the `authorization` value `header` names: the token checked by
    /// [`Authenticator::authenticate`] and, for a staff role, the subject confirmed on
    /// the staff directory in that role (an admin token for a staff id the plan does not
    /// have, or a reviewer's token for a nurse's id, is refused). A confirmation is
    /// remembered for [`crate::auth::STAFF_CONFIRMATION_SECS`], so a removed or
    /// re-assigned staff member is refused within that time.
    pub async fn authenticate(&self, header: Option<&str>) -> AppResult<Actor> {
        let now = self.now();
        let actor = self.auth.authenticate(header, now)?;
        let Some(id) = actor.staff_id() else {
            return Ok(actor);
        };
        if self.auth.staff_confirmed(&actor, now) {
            return Ok(actor);
        }
        match self.store.get_staff(&id).await {
            Ok(staff) if staff.role.as_str() == actor.role.as_str() => {
                self.auth.confirm_staff(&actor, now);
                Ok(actor)
            }
            Ok(_) | Err(carepath_store::StoreError::NotFound { .. }) => {
                Err(crate::auth::AuthError::UnknownStaff.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The clock's reading at the precision both backends store (microseconds), so
    /// keys, pages and stored times compare exactly.
    pub fn stored_now(&self) -> DateTime<Utc> {
        micros(self.clock.now())
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
    ) -> AppResult<()> {
        self.store
            .audit(
                &caller.audit_entry(record_kind, record_id, member, outcome),
                self.now(),
            )
            .await?;
        Ok(())
    }

    /// Audits a list read in one transaction: the list of one member's records
    /// (`list`: its kind and the member) under that member, whatever it found, and
    /// each record shown, as `(record kind, id, member)`.
    pub async fn audit_list<'a>(
        &self,
        caller: &Caller,
        list: Option<(&str, &MemberId)>,
        shown: impl IntoIterator<Item = (&'a str, &'a str, &'a MemberId)>,
    ) -> AppResult<()> {
        let now = self.now();
        let mut entries: Vec<AuditEntry> = list
            .map(|(kind, member)| {
                caller.audit_entry(kind, member.as_str(), Some(member), AuditOutcome::Allowed)
            })
            .into_iter()
            .collect();
        entries.extend(shown.into_iter().map(|(kind, id, member)| {
            caller.audit_entry(kind, id, Some(member), AuditOutcome::Allowed)
        }));
        let mut tx = self.store.begin().await?;
        for chunk in entries.chunks(carepath_store::MAX_AUDIT_BATCH) {
            tx.append_audits(chunk, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Audits a refused access and returns the error to send: callers not entitled to
    /// a record learn nothing about it. The first refusal of a caller, call and record
    /// in a minute is written at once; identical ones after it in that minute are
    /// counted and written as one entry ([`crate::audit::refusals`]).
    pub async fn refuse(
        &self,
        caller: &Caller,
        record_kind: &str,
        record_id: &str,
        member: Option<&MemberId>,
        err: AppError,
    ) -> AppError {
        let now = self.now();
        let entry = caller.audit_entry(record_kind, record_id, member, AuditOutcome::Denied);
        if !self.refusals.first_of_minute(&entry, now) {
            return err;
        }
        if let Err(audit_err) = self.store.audit(&entry, now).await {
            return audit_err.into();
        }
        err
    }

    /// Writes the counted repeats of refusals: those of minutes already over, or with
    /// `all` every one (at shutdown). Returns how many entries it wrote.
    pub async fn flush_refusals(&self, all: bool) -> AppResult<usize> {
        let now = self.now();
        let due = self.refusals.take_due(now, all);
        if due.is_empty() {
            return Ok(0);
        }
        let mut tx = self.store.begin().await?;
        for entry in &due {
            tx.append_audit(entry, now).await?;
        }
        tx.commit().await?;
        Ok(due.len())
    }
}

pub use carepath_store::micros;

/// Who is calling, and through which operation (the door's name for it: a gRPC
/// method, a FHIR interaction), as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub actor: Actor,
    pub operation: String,
}

impl Caller {
    /// `actor` calling through `operation`.
    pub fn new(actor: Actor, operation: impl Into<String>) -> Self {
        Caller {
            actor,
            operation: operation.into(),
        }
    }

    /// A background task of the application acting as the internal service `name`
    /// (a sweep, a consumer); `operation` names what it does in the audit log.
    pub fn service(name: &str, operation: &str) -> Self {
        Caller {
            actor: Actor::new(carepath_core::Role::Service, name).expect("valid service name"),
            operation: operation.to_owned(),
        }
    }

    /// The audit entry of this caller's access to one record.
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
            rpc: self.operation.clone(),
            record_kind: record_kind.to_owned(),
            record_id: record_id.to_owned(),
            member_id: member.map(|m| m.as_str().to_owned()),
            outcome,
            repeats: 0,
        }
    }

    /// Refuses the call unless the caller has one of `roles`; `what` names the
    /// capability in the message.
    pub fn require_role(&self, roles: &[carepath_core::Role], what: &str) -> AppResult<()> {
        if roles.contains(&self.actor.role) {
            Ok(())
        } else {
            Err(AppError::denied(format!(
                "{what} is for {}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
}

/// Page size bounds shared by every list.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// A page request: the token the previous page returned (empty for the first) and
/// how many items at most (0 for the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub token: String,
    pub size: u32,
}

impl PageRequest {
    /// The size to read: 0 means the default; above the maximum is an error naming
    /// `field`.
    pub fn checked_size(&self, field: &str) -> AppResult<u32> {
        page_size(self.size, field)
    }
}

/// One page of a list and the token of the next (empty on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

/// Reads a page size: 0 means the default; above the maximum is an error naming the
/// field.
pub fn page_size(requested: u32, field: &str) -> AppResult<u32> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n > MAX_PAGE_SIZE => Err(AppError::field(
            field,
            format!("must be at most {MAX_PAGE_SIZE}"),
        )),
        n => Ok(n),
    }
}

/// The most bytes of stored records one page of a list carries: half the 4 MiB
/// message cap, so a page and what its answer adds fit in one message whatever the
/// records hold. A page that reaches it ends early, with the token of the next.
pub const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// How one list is read for [`visible_page`]: the token of the page after a row, and
/// about how many bytes a row takes.
#[derive(Debug, Clone, Copy)]
pub struct Rows<K, W> {
    pub key: K,
    pub weight: W,
}

/// One page of a list read from the database, built from the rows the caller may
/// see and bounded in bytes: `read` reads the page of rows after a token (at most
/// `size` rows), `visible` gives what the caller may see of a row (`None`:
/// nothing), `rows` says how to key and weigh a row. Pages are read until one
/// visible row more than `size` is found or the list ends, so the next page's token,
/// and whether there is one, is made of rows the caller may see and says nothing of
/// the rows hidden from it. A page also ends before the row that would take it past
/// [`MAX_PAGE_BYTES`] (a page holds at least one row).
pub async fn visible_page<R, T, F>(
    token: &str,
    size: u32,
    mut read: impl FnMut(String) -> F,
    mut visible: impl FnMut(&R) -> AppResult<Option<T>>,
    rows: Rows<impl Fn(&R) -> String, impl Fn(&R) -> usize>,
) -> AppResult<Page<T>>
where
    F: Future<Output = Result<carepath_store::Page<R>, carepath_store::StoreError>>,
{
    let mut items = Vec::new();
    let mut bytes = 0;
    let mut last_key = String::new();
    let mut token = token.to_owned();
    loop {
        let page = read(token).await?;
        for row in &page.items {
            let Some(item) = visible(row)? else {
                continue;
            };
            let weight = (rows.weight)(row);
            let full = items.len() == size as usize
                || (!items.is_empty() && bytes + weight > MAX_PAGE_BYTES);
            if full {
                return Ok(Page {
                    items,
                    next_page_token: last_key,
                });
            }
            bytes += weight;
            last_key = (rows.key)(row);
            items.push(item);
        }
        match page.next_page_token {
            Some(next) => token = next,
            None => {
                return Ok(Page {
                    items,
                    next_page_token: String::new(),
                });
            }
        }
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

    /// Rows `0..n` read two at a time, each a third of a page's bytes; odd rows are
    /// hidden from the caller.
    async fn odd_rows_hidden(n: u32, token: &str, size: u32) -> Page<u32> {
        visible_page(
            token,
            size,
            |token| async move {
                let after: u32 = token.parse().map_or(0, |t: u32| t + 1);
                let rows: Vec<u32> = (after..n).take(3).collect();
                Ok(carepath_store::Page::of(rows, 2, u32::to_string))
            },
            |row| Ok((row % 2 == 0).then_some(*row)),
            Rows {
                key: u32::to_string,
                weight: |_: &u32| MAX_PAGE_BYTES / 3,
            },
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_page_of_visible_rows_names_only_visible_rows() {
        // The page ends at the last visible row kept, not at the hidden row read
        // after it.
        let first = odd_rows_hidden(9, "", 2).await;
        assert_eq!(
            (first.items, first.next_page_token.as_str()),
            (vec![0, 2], "2")
        );
        let second = odd_rows_hidden(9, "2", 2).await;
        assert_eq!(
            (second.items, second.next_page_token.as_str()),
            (vec![4, 6], "6")
        );
        let last = odd_rows_hidden(9, "6", 2).await;
        assert_eq!((last.items, last.next_page_token.as_str()), (vec![8], ""));
        // Hidden rows after the last visible one give no next page.
        let only_hidden_left = odd_rows_hidden(4, "", 2).await;
        assert_eq!(only_hidden_left.items, vec![0, 2]);
        assert_eq!(only_hidden_left.next_page_token, "");
        // A page ends before the row that would take it past the byte bound.
        let bounded = odd_rows_hidden(20, "", 10).await;
        assert_eq!(
            (bounded.items, bounded.next_page_token.as_str()),
            (vec![0, 2, 4], "4")
        );
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(page_size(0, "page").unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(7, "page").unwrap(), 7);
        assert!(matches!(page_size(501, "page"), Err(AppError::Invalid(_))));
    }
}
