//! The one command pipeline every area uses.
//!
//! A command on a stored aggregate (a precertification case, a managed case, a
//! second-opinion request) goes through the same steps, in one transaction:
//!
//! 1. load the aggregate under a row lock ([`Aggregate::load_for_update`]);
//! 2. ask the area's policy what the caller may do with it, once: a caller with no
//!    standing is told the record does not exist, and the refusal is audited;
//! 3. run the domain command, which changes the aggregate and returns the events to
//!    publish (a refusal by the domain is audited too);
//! 4. store the aggregate, its events (the outbox) and the audit entry of the access,
//!    and commit.
//!
//! [`App::change`] runs all four; an area that has work of its own inside the
//! transaction (second opinion assigns a physician there) takes the steps one at a
//! time through [`Working`]. Reads go through [`App::view`]: load, policy, audit.

use carepath_core::{Actor, EventDraft, MemberId};
use carepath_store::{AuditOutcome, Store, StoreError, Tx};
use chrono::{DateTime, Utc};

use crate::{
    context::{App, Caller},
    error::{AppError, AppResult},
};

/// A stored aggregate: how it is read, written and named in the audit log. The
/// mapping between the aggregate and its row lives in the implementation, once.
pub trait Aggregate: Sized + Send + Sync {
    /// The audit log's record kind, e.g. `precert_case`.
    const RECORD_KIND: &'static str;
    /// What a caller is told was not found, e.g. `precert case`.
    const NOUN: &'static str;
    /// The stored row.
    type Record: Send + Sync;

    /// The member the aggregate concerns.
    fn member(&self) -> &MemberId;
    /// Reads the aggregate from its row.
    fn from_record(record: &Self::Record) -> AppResult<Self>;
    /// The row to store after a change; `previous` is the row it was read from.
    fn to_record(&self, previous: &Self::Record) -> Self::Record;
    /// Reads the row.
    fn load(
        store: &Store,
        id: &str,
    ) -> impl Future<Output = Result<Self::Record, StoreError>> + Send;
    /// Reads the row under a lock held until the transaction ends.
    fn load_for_update(
        tx: &mut Tx,
        id: &str,
    ) -> impl Future<Output = Result<Self::Record, StoreError>> + Send;
    /// Writes the row.
    fn save(
        tx: &mut Tx,
        record: &Self::Record,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The result of a command: the aggregate after it, the caller's standing, the
/// command's own value and the stored row.
#[derive(Debug)]
pub struct Changed<A: Aggregate, V, T> {
    pub aggregate: A,
    pub standing: V,
    pub value: T,
    pub record: A::Record,
    /// When the change was stored (microsecond precision).
    pub at: DateTime<Utc>,
}

/// A command under way: the open transaction, the locked row, the aggregate and the
/// caller's standing. Dropping it rolls back.
#[derive(Debug)]
pub struct Working<'a, A: Aggregate, V> {
    app: &'a App,
    caller: &'a Caller,
    /// The aggregate's id, as the audit log names it.
    pub id: String,
    pub tx: Tx,
    pub record: A::Record,
    pub aggregate: A,
    pub standing: V,
    pub events: Vec<EventDraft>,
    /// The command's time (microsecond precision).
    pub now: DateTime<Utc>,
}

/// The id of a record as the caller sent it, trimmed; `field` names it when empty.
pub fn record_id(id: &str, field: &str) -> AppResult<String> {
    let id = id.trim();
    if id.is_empty() {
        return Err(AppError::field(field, "is required"));
    }
    Ok(id.to_owned())
}

/// The events of a command, each with a fresh time-ordered id.
pub fn events_of(drafts: Vec<EventDraft>) -> Vec<carepath_core::DomainEvent> {
    drafts
        .into_iter()
        .map(|draft| draft.into_event(uuid::Uuid::now_v7().to_string()))
        .collect()
}

/// Writes the events of a command to the outbox of the open transaction.
pub async fn append_events(tx: &mut Tx, drafts: Vec<EventDraft>) -> AppResult<()> {
    Ok(tx.append_events(&events_of(drafts)).await?)
}

impl App {
    /// Reads an aggregate the caller has standing on (`policy` says which, `None`
    /// for none) and audits the read; otherwise an audited NOT_FOUND, whether or not
    /// it exists. `id` is already checked.
    pub async fn view<A: Aggregate, V>(
        &self,
        caller: &Caller,
        id: &str,
        policy: impl FnOnce(&Actor, &A) -> Option<V>,
    ) -> AppResult<(A::Record, A, V)> {
        let (record, aggregate, standing) = self.visible(caller, id, policy).await?;
        self.audit(
            caller,
            A::RECORD_KIND,
            id,
            Some(aggregate.member()),
            AuditOutcome::Allowed,
        )
        .await?;
        Ok((record, aggregate, standing))
    }

    /// Like [`App::view`], without auditing the read (the caller goes on to a step
    /// that audits it, such as a download).
    pub async fn visible<A: Aggregate, V>(
        &self,
        caller: &Caller,
        id: &str,
        policy: impl FnOnce(&Actor, &A) -> Option<V>,
    ) -> AppResult<(A::Record, A, V)> {
        let record = match A::load(&self.store, id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => return Err(self.hidden::<A>(caller, id, None).await),
            Err(e) => return Err(e.into()),
        };
        let aggregate = A::from_record(&record)?;
        match policy(&caller.actor, &aggregate) {
            Some(standing) => Ok((record, aggregate, standing)),
            None => Err(self
                .hidden::<A>(caller, id, Some(aggregate.member()))
                .await),
        }
    }

    /// The audited NOT_FOUND a caller without standing gets.
    pub async fn hidden<A: Aggregate>(
        &self,
        caller: &Caller,
        id: &str,
        member: Option<&MemberId>,
    ) -> AppError {
        self.refuse(
            caller,
            A::RECORD_KIND,
            id,
            member,
            AppError::hidden(A::NOUN, id),
        )
        .await
    }

    /// Steps 1 and 2 of a command: opens the transaction, loads the aggregate under
    /// lock and asks `policy` for the caller's standing.
    pub async fn open<'a, A: Aggregate, V>(
        &'a self,
        caller: &'a Caller,
        id: &str,
        policy: impl FnOnce(&Actor, &A, DateTime<Utc>) -> Option<V>,
    ) -> AppResult<Working<'a, A, V>> {
        let now = self.stored_now();
        let mut tx = self.store.begin().await?;
        let record = match A::load_for_update(&mut tx, id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => {
                drop(tx);
                return Err(self.hidden::<A>(caller, id, None).await);
            }
            Err(e) => return Err(e.into()),
        };
        let aggregate = A::from_record(&record)?;
        let Some(standing) = policy(&caller.actor, &aggregate, now) else {
            drop(tx);
            return Err(self
                .hidden::<A>(caller, id, Some(aggregate.member()))
                .await);
        };
        Ok(Working {
            app: self,
            caller,
            id: id.to_owned(),
            tx,
            record,
            aggregate,
            standing,
            events: Vec::new(),
            now,
        })
    }

    /// A whole command: [`App::open`], [`Working::apply`], [`Working::commit`] (or
    /// [`Working::fail`] when the command fails).
    pub async fn change<A: Aggregate, V, T>(
        &self,
        caller: &Caller,
        id: &str,
        policy: impl FnOnce(&Actor, &A, DateTime<Utc>) -> Option<V>,
        command: impl FnOnce(&mut A, &V, DateTime<Utc>) -> AppResult<(T, Vec<EventDraft>)>,
    ) -> AppResult<Changed<A, V, T>> {
        let mut working = self.open(caller, id, policy).await?;
        let value = match working.apply(command).await {
            Ok(value) => value,
            Err(err) => return Err(working.fail(err).await),
        };
        let (aggregate, standing, record, at) = working.commit().await?;
        Ok(Changed {
            aggregate,
            standing,
            value,
            record,
            at,
        })
    }
}

impl<A: Aggregate, V> Working<'_, A, V> {
    /// Step 3: runs the domain command. On failure nothing is written: hand the
    /// error to [`Working::fail`], which ends the transaction and audits a refusal by
    /// the domain. (The refusal cannot be audited while the transaction is open: on
    /// SQLite the open transaction holds the one writer the audit entry needs.)
    pub async fn apply<T>(
        &mut self,
        command: impl FnOnce(&mut A, &V, DateTime<Utc>) -> AppResult<(T, Vec<EventDraft>)>,
    ) -> AppResult<T> {
        let (value, events) = command(&mut self.aggregate, &self.standing, self.now)?;
        self.events.extend(events);
        Ok(value)
    }

    /// Ends a failed command: rolls the transaction back (releasing the row lock),
    /// then audits the refusal if the domain refused the caller. Returns the error to
    /// send.
    pub async fn fail(self, err: AppError) -> AppError {
        let Working {
            app,
            caller,
            id,
            tx,
            aggregate,
            ..
        } = self;
        drop(tx);
        match err {
            err @ AppError::PermissionDenied(_) => {
                app.refuse(caller, A::RECORD_KIND, &id, Some(aggregate.member()), err)
                    .await
            }
            err => err,
        }
    }

    /// Step 4: stores the aggregate, the events of every command applied and the
    /// audit entry of the access, and commits. Returns the aggregate, the caller's
    /// standing, the stored row and the time of the change.
    pub async fn commit(mut self) -> AppResult<(A, V, A::Record, DateTime<Utc>)> {
        let record = self.aggregate.to_record(&self.record);
        A::save(&mut self.tx, &record, self.now).await?;
        append_events(&mut self.tx, std::mem::take(&mut self.events)).await?;
        self.tx
            .append_audit(
                &self.caller.audit_entry(
                    A::RECORD_KIND,
                    &self.id,
                    Some(self.aggregate.member()),
                    AuditOutcome::Allowed,
                ),
                self.now,
            )
            .await?;
        self.tx.commit().await?;
        Ok((self.aggregate, self.standing, record, self.now))
    }
}
