//! Directory records remembered for the calls that read them every time.
//!
//! Every CheckRequirement, Submit and CDS Hooks call reads the member, the member's
//! plan and one or two providers. Those records change rarely (an eligibility feed, a
//! network update), so the ones read are remembered for [`MEMORY_SECS`] and the call
//! goes without the read.
//!
//! Invariants:
//! - a change made through this process's directory use cases is seen by the calls
//!   that start after it committed (each write forgets the record it changes; a read
//!   racing with the change may keep the old record, for at most [`MEMORY_SECS`]);
//!   a change made by another process on the same database is seen within
//!   [`MEMORY_SECS`];
//! - only records that exist are remembered: an unknown id is read every time;
//! - at most [`MAX_REMEMBERED`] records of each kind are kept.

use std::{collections::HashMap, hash::Hash, sync::Mutex};

use carepath_core::{Member, MemberId, Npi, Plan, PlanId, Provider};
use carepath_store::SubmissionParties;
use chrono::{DateTime, Utc};

/// How long a record read from the directory is used without reading it again.
pub const MEMORY_SECS: i64 = 5;
/// Most records of one kind remembered.
pub const MAX_REMEMBERED: usize = 100_000;

/// Records of one kind, each with the time after which it is read again.
#[derive(Debug)]
struct Remembered<K, V> {
    records: Mutex<HashMap<K, (V, i64)>>,
}

impl<K, V> Default for Remembered<K, V> {
    fn default() -> Self {
        Remembered {
            records: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Remembered<K, V> {
    fn get(&self, key: &K, now: i64) -> Option<V> {
        let records = self.records.lock().expect("not poisoned");
        records
            .get(key)
            .filter(|(_, until)| now <= *until)
            .map(|(record, _)| record.clone())
    }

    fn put(&self, key: &K, record: &V, now: i64) {
        let mut records = self.records.lock().expect("not poisoned");
        if records.len() >= MAX_REMEMBERED && !records.contains_key(key) {
            records.retain(|_, (_, until)| now <= *until);
            if records.len() >= MAX_REMEMBERED {
                records.clear();
            }
        }
        records.insert(key.clone(), (record.clone(), now + MEMORY_SECS));
    }

    fn forget(&self, key: &K) {
        self.records.lock().expect("not poisoned").remove(key);
    }
}

/// The directory records remembered by one process.
#[derive(Debug, Default)]
pub struct DirectoryMemory {
    members: Remembered<MemberId, Member>,
    plans: Remembered<PlanId, Plan>,
    providers: Remembered<Npi, Provider>,
}

impl DirectoryMemory {
    /// The member, the member's plan and the two providers, when all four are
    /// remembered; `existing_case` is left `None` (it is never remembered).
    pub fn parties(
        &self,
        member: &MemberId,
        requesting: &Npi,
        servicing: &Npi,
        now: DateTime<Utc>,
    ) -> Option<SubmissionParties> {
        let now = now.timestamp();
        let member = self.members.get(member, now)?;
        let plan = self.plans.get(&member.plan_id, now)?;
        let requesting = self.providers.get(requesting, now)?;
        let servicing = self.providers.get(servicing, now)?;
        Some(SubmissionParties {
            existing_case: None,
            member: Some(member),
            plan: Some(plan),
            requesting: Some(requesting),
            servicing: Some(servicing),
        })
    }

    /// Remembers every record `found` holds.
    pub fn remember(&self, found: &SubmissionParties, now: DateTime<Utc>) {
        let now = now.timestamp();
        if let Some(member) = &found.member {
            self.members.put(&member.id, member, now);
        }
        if let Some(plan) = &found.plan {
            self.plans.put(&plan.id, plan, now);
        }
        for provider in [&found.requesting, &found.servicing].into_iter().flatten() {
            self.providers.put(&provider.npi, provider, now);
        }
    }

    /// Forgets a member being changed.
    pub fn forget_member(&self, id: &MemberId) {
        self.members.forget(id);
    }

    /// Forgets a plan being changed.
    pub fn forget_plan(&self, id: &PlanId) {
        self.plans.forget(id);
    }

    /// Forgets a provider being changed.
    pub fn forget_provider(&self, npi: &Npi) {
        self.providers.forget(npi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parties() -> SubmissionParties {
        let demo = carepath_core::DirectoryBundle::demo().expect("the demo directory");
        let member = demo.members[0].clone();
        let plan = demo
            .plans
            .iter()
            .find(|p| p.id == member.plan_id)
            .cloned()
            .expect("the member's plan");
        SubmissionParties {
            existing_case: None,
            member: Some(member),
            plan: Some(plan),
            requesting: Some(demo.providers[0].clone()),
            servicing: Some(demo.providers[1].clone()),
        }
    }

    #[test]
    fn remembered_parties_last_their_time_and_a_change_forgets_them() {
        let memory = DirectoryMemory::default();
        let found = parties();
        let (member, requesting, servicing) = (
            found.member.clone().unwrap(),
            found.requesting.clone().unwrap(),
            found.servicing.clone().unwrap(),
        );
        let t0: DateTime<Utc> = "2026-12-07T08:00:00Z".parse().unwrap();
        let ask = |at| memory.parties(&member.id, &requesting.npi, &servicing.npi, at);
        assert!(ask(t0).is_none(), "nothing is remembered before a read");
        memory.remember(&found, t0);
        let remembered = ask(t0).expect("remembered");
        assert_eq!(remembered.member, found.member);
        assert_eq!(remembered.plan, found.plan);
        assert_eq!(remembered.servicing, found.servicing);
        assert!(ask(t0 + chrono::Duration::seconds(MEMORY_SECS)).is_some());
        assert!(ask(t0 + chrono::Duration::seconds(MEMORY_SECS + 1)).is_none());

        memory.forget_member(&member.id);
        assert!(ask(t0).is_none(), "a changed member is read again");
        memory.remember(&found, t0);
        memory.forget_plan(&member.plan_id);
        assert!(ask(t0).is_none(), "a changed plan is read again");
        memory.remember(&found, t0);
        memory.forget_provider(&servicing.npi);
        assert!(ask(t0).is_none(), "a changed provider is read again");
    }

    #[test]
    fn at_most_the_bound_is_kept() {
        let remembered: Remembered<u32, u32> = Remembered::default();
        for key in 0..(MAX_REMEMBERED as u32 + 10) {
            remembered.put(&key, &key, 0);
        }
        let kept = remembered.records.lock().unwrap().len();
        assert!(kept <= MAX_REMEMBERED, "{kept}");
        let last = MAX_REMEMBERED as u32 + 9;
        assert_eq!(remembered.get(&last, 0), Some(last));
    }
}
