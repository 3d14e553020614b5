//! The reads of one batch of events, each made once.
//!
//! Planning an event's notices reads its case and the members, providers and staff
//! it names: about six reads an event, most of them the same records as the event
//! before it (a submission's events share a case; the imaging centre is named by
//! thousands of cases). The consumer handles its events a batch at a time, so a
//! [`BatchReads`] keeps what the batch read, for the batch only: every batch reads
//! the directory afresh, so a change is seen by the next batch. A record another
//! event of the batch is reading already may be read twice (lookups made at the same
//! moment); failures are not kept.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

use carepath_core::{Member, MemberId, Npi, Provider, Staff, StaffId};
use carepath_store::{CaseRecord, Store, StoreError};

/// A store read of one batch's events, each record read once.
#[derive(Debug)]
pub struct BatchReads {
    store: Store,
    cases: Kept<String, CaseRecord>,
    members: Kept<MemberId, Member>,
    providers: Kept<Npi, Provider>,
    staff: Kept<StaffId, Staff>,
}

/// Records read so far, and those found absent (`None`).
type Kept<K, V> = Mutex<HashMap<K, Option<Arc<V>>>>;

impl BatchReads {
    pub fn new(store: &Store) -> BatchReads {
        BatchReads {
            store: store.clone(),
            cases: Mutex::default(),
            members: Mutex::default(),
            providers: Mutex::default(),
            staff: Mutex::default(),
        }
    }

    /// The precertification case `id`, if stored.
    pub async fn case(&self, id: &str) -> Result<Option<Arc<CaseRecord>>, StoreError> {
        once(&self.cases, id.to_owned(), self.store.get_case(id)).await
    }

    /// Reads the cases `ids` in one go (a batch's events name up to one case each),
    /// keeping each, and keeping as absent those not stored. A failed read keeps
    /// nothing: each case is then read on its own when asked for.
    pub async fn read_cases(&self, ids: &[&str]) {
        let mut wanted: Vec<&str> = {
            let kept = self.cases.lock().expect("not poisoned");
            ids.iter()
                .copied()
                .filter(|id| !kept.contains_key(*id))
                .collect()
        };
        wanted.sort_unstable();
        wanted.dedup();
        for chunk in wanted.chunks(carepath_store::CASES_PER_READ) {
            match self.store.get_cases(chunk).await {
                Ok(found) => {
                    let mut kept = self.cases.lock().expect("not poisoned");
                    for id in chunk {
                        kept.insert((*id).to_owned(), None);
                    }
                    for case in found {
                        kept.insert(case.id.clone(), Some(Arc::new(case)));
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cases not read together; each is read alone");
                }
            }
        }
    }

    /// The member `id`, if in the directory.
    pub async fn member(&self, id: &MemberId) -> Result<Option<Arc<Member>>, StoreError> {
        once(&self.members, id.clone(), self.store.get_member(id)).await
    }

    /// The provider `npi`, if in the directory.
    pub async fn provider(&self, npi: &Npi) -> Result<Option<Arc<Provider>>, StoreError> {
        once(&self.providers, npi.clone(), self.store.get_provider(npi)).await
    }

    /// The staff member `id`, if in the directory.
    pub async fn staff(&self, id: &StaffId) -> Result<Option<Arc<Staff>>, StoreError> {
        once(&self.staff, id.clone(), self.store.get_staff(id)).await
    }
}

/// What `kept` holds under `key`, or the outcome of `read` (kept unless it failed).
async fn once<K: Eq + Hash, V>(
    kept: &Kept<K, V>,
    key: K,
    read: impl Future<Output = Result<V, StoreError>>,
) -> Result<Option<Arc<V>>, StoreError> {
    if let Some(found) = kept.lock().expect("not poisoned").get(&key) {
        return Ok(found.clone());
    }
    let found = match read.await {
        Ok(v) => Some(Arc::new(v)),
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    kept.lock()
        .expect("not poisoned")
        .insert(key, found.clone());
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn not_found() -> StoreError {
        StoreError::NotFound {
            kind: "case",
            id: "PA-1".into(),
        }
    }

    #[tokio::test]
    async fn a_record_is_read_once_a_batch_and_a_failure_is_not_kept() {
        let kept: Kept<String, u32> = Mutex::default();
        let reads = AtomicUsize::new(0);
        let read = |v: Result<u32, StoreError>| {
            reads.fetch_add(1, Ordering::SeqCst);
            async move { v }
        };
        let a = once(&kept, "a".into(), read(Ok(7))).await.unwrap();
        assert_eq!(a.as_deref(), Some(&7));
        // Kept: the second lookup does not read (its future is never awaited).
        let again = once(&kept, "a".into(), async { Ok(8) }).await.unwrap();
        assert_eq!(again.as_deref(), Some(&7));
        // Absent is kept too.
        assert!(
            once(&kept, "b".into(), read(Err(not_found())))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            once(&kept, "b".into(), async { Ok(9) })
                .await
                .unwrap()
                .is_none()
        );
        // A failure is not: the next lookup reads again.
        let failed = once(
            &kept,
            "c".into(),
            read(Err(StoreError::Open {
                target: "test".into(),
                reason: "unreachable".into(),
            })),
        )
        .await;
        assert!(failed.is_err());
        let retried = once(&kept, "c".into(), read(Ok(3))).await.unwrap();
        assert_eq!(retried.as_deref(), Some(&3));
        assert_eq!(reads.load(Ordering::SeqCst), 4);
    }
}
