//! Live status: every committed status change is broadcast; a watcher gets the
//! current status first and then each change of its request until it closes.

use std::time::Duration;

use carepath_secondopinion::{SecondOpinionRequest, Status};
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream::BoxStream};
use tokio::sync::broadcast;

use super::{SecondOpinion, request_of};
use crate::{context::Caller, error::AppResult, pipeline::record_id};

/// One status of a request as a watcher hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The request watched.
    pub request_id: String,
    /// Its status.
    pub status: Status,
    /// The number of history entries once the change was made: later changes have
    /// higher versions.
    pub version: u64,
    /// When the status was reached.
    pub at: Option<DateTime<Utc>>,
    /// The history's action that made the change (`snapshot` for the first message).
    pub action: String,
    /// True for the first message of a watch: the status when it began.
    pub snapshot: bool,
}

/// What a watch keeps between messages.
struct Following {
    app: crate::App,
    id: String,
    changes: broadcast::Receiver<StatusChange>,
    stopping: tokio_util::sync::CancellationToken,
    version: u64,
    status: Status,
}

impl SecondOpinion {
    /// Tells watchers of every status change in the history after `before`.
    pub(super) fn announce(&self, request: &SecondOpinionRequest, before: usize) {
        let mut last = before
            .checked_sub(1)
            .and_then(|i| request.history.get(i))
            .map(|h| h.status);
        for (i, entry) in request.history.iter().enumerate().skip(before) {
            if Some(entry.status) != last {
                // No receivers is fine: nobody is watching.
                let _ = self.changes.send(StatusChange {
                    request_id: request.id.clone(),
                    status: entry.status,
                    version: i as u64 + 1,
                    at: Some(entry.at),
                    action: entry.action.clone(),
                    snapshot: false,
                });
            }
            last = Some(entry.status);
        }
    }

    /// Watches a request the caller may see (the read is audited): first its current
    /// status, then each change as it commits, until the request closes or the
    /// application stops. A watcher too slow to keep up is sent the current status.
    pub async fn watch_status(
        &self,
        caller: &Caller,
        request_id: &str,
    ) -> AppResult<BoxStream<'static, StatusChange>> {
        let id = record_id(request_id, "request_id")?;
        // Subscribe before reading, so no change between the read and the first
        // broadcast is missed; the version check drops ones the snapshot covers.
        let changes = self.changes.subscribe();
        let (request, _) = self.read(caller, &id).await?;
        let snapshot = StatusChange {
            request_id: id.clone(),
            status: request.status,
            version: request.version(),
            at: request.history.last().map(|h| h.at),
            action: "snapshot".into(),
            snapshot: true,
        };
        let following = Following {
            app: self.app.clone(),
            id,
            changes,
            stopping: self.stopping.clone(),
            version: request.version(),
            status: request.status,
        };
        let rest = futures::stream::unfold(following, |mut f| async move {
            let next = f.next().await?;
            Some((next, f))
        });
        Ok(futures::stream::once(futures::future::ready(snapshot))
            .chain(rest)
            .boxed())
    }
}

/// How often a watch reads its request again whatever it heard: a change committed by
/// another process reaches this one through a database notification
/// ([`SecondOpinion::follow_other_processes`]), and with notifications off, or one
/// missed while the listener reconnected, this is how the watch still learns of it.
const REREAD_EVERY: Duration = Duration::from_secs(5);

impl Following {
    /// The next change of the request, or `None` when the watch ends.
    async fn next(&mut self) -> Option<StatusChange> {
        while self.status != Status::Closed {
            let heard = tokio::select! {
                () = self.stopping.cancelled() => return None,
                change = self.changes.recv() => change,
                () = tokio::time::sleep(REREAD_EVERY) => Err(broadcast::error::RecvError::Lagged(0)),
            };
            let next = match heard {
                Ok(c) if c.request_id == self.id && c.version > self.version => c,
                Ok(_) => continue,
                // Missed some, or time to look again: the current status, if it moved.
                Err(broadcast::error::RecvError::Lagged(_)) => match self.current().await? {
                    Some(current) => current,
                    None => continue,
                },
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            self.version = next.version;
            self.status = next.status;
            return Some(next);
        }
        None
    }

    /// The request's current status as a change, if it moved past what this watch
    /// sent; `None` (outer) when the request cannot be read, which ends the watch.
    async fn current(&self) -> Option<Option<StatusChange>> {
        let current = match self.app.store.get_opinion_request(&self.id).await {
            Ok(r) => request_of(&r).ok()?,
            Err(_) => return None,
        };
        if current.version() <= self.version {
            return Some(None);
        }
        let last = current.history.last();
        Some(Some(StatusChange {
            request_id: self.id.clone(),
            status: current.status,
            version: current.version(),
            at: Some(last.map_or_else(|| self.app.now(), |h| h.at)),
            action: last.map(|h| h.action.clone()).unwrap_or_default(),
            snapshot: false,
        }))
    }
}
