//! The directory tables: plans, members, providers and staff, each kept as a JSON
//! document plus the columns its lists filter on.

use carepath_core::{
    DirectoryBundle, DomainEvent, Member, MemberId, Npi, Plan, PlanId, Provider, Staff, StaffId,
};
use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};
use sqlx::types::Json;

use crate::{Page, Store, StoreError, Tx, on_db, on_tx};

/// Filters of [`Store::list_members`]; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct MemberFilter {
    pub plan_id: Option<PlanId>,
    pub subscriber_id: Option<MemberId>,
}

/// Filters of [`Store::list_providers`]; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct ProviderFilter {
    pub specialty: Option<String>,
    pub kind: Option<String>,
    pub country: Option<String>,
    pub in_network_for_plan: Option<String>,
    pub language: Option<String>,
}

/// Filters of [`Store::list_staff`]; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct StaffFilter {
    pub role: Option<String>,
    pub specialty: Option<String>,
}

pub(crate) fn decode<T: DeserializeOwned>(
    kind: &'static str,
    id: &str,
    doc: Json<serde_json::Value>,
) -> Result<T, StoreError> {
    serde_json::from_value(doc.0).map_err(|e| StoreError::Corrupt {
        kind,
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

fn doc_of<T: Serialize>(value: &T) -> Json<serde_json::Value> {
    Json(serde_json::to_value(value).expect("directory entities serialize to JSON"))
}

/// Rows are fetched one past the page size to learn whether another page follows;
/// each row comes with its key, the token of the page after it.
pub(crate) fn paginate<T>(rows: Vec<(String, T)>, page_size: u32) -> Page<T> {
    Page::of(rows, page_size, |(key, _)| key.clone()).map(|(_, item)| item)
}

fn upsert_event(
    kind: &str,
    aggregate_kind: &str,
    id: &str,
    member: Option<MemberId>,
    now: DateTime<Utc>,
    payload: serde_json::Value,
) -> DomainEvent {
    DomainEvent {
        id: uuid::Uuid::now_v7().to_string(),
        kind: kind.to_owned(),
        aggregate_kind: aggregate_kind.to_owned(),
        aggregate_id: id.to_owned(),
        member_id: member,
        occurred_at: now,
        payload,
    }
}

const EXISTS_PLAN: &str = "SELECT COUNT(*) FROM plan WHERE id = $1";
const UPSERT_PLAN: &str = "INSERT INTO plan (id, doc, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at";
const EXISTS_MEMBER: &str = "SELECT COUNT(*) FROM member WHERE id = $1";
const UPSERT_MEMBER: &str = "INSERT INTO member (id, plan_id, subscriber_id, doc, updated_at)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (id) DO UPDATE SET plan_id = excluded.plan_id,
        subscriber_id = excluded.subscriber_id, doc = excluded.doc,
        updated_at = excluded.updated_at";
const EXISTS_PROVIDER: &str = "SELECT COUNT(*) FROM provider WHERE npi = $1";
const UPSERT_PROVIDER: &str =
    "INSERT INTO provider (npi, kind, specialty, country, doc, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (npi) DO UPDATE SET kind = excluded.kind, specialty = excluded.specialty,
        country = excluded.country, doc = excluded.doc, updated_at = excluded.updated_at";
const EXISTS_STAFF: &str = "SELECT COUNT(*) FROM staff WHERE id = $1";
const UPSERT_STAFF: &str = "INSERT INTO staff (id, role, specialty, doc, updated_at)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (id) DO UPDATE SET role = excluded.role, specialty = excluded.specialty,
        doc = excluded.doc, updated_at = excluded.updated_at";

impl Tx {
    async fn count(&mut self, sql: &'static str, id: &str) -> Result<i64, StoreError> {
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(c).await)?)
    }

    /// Inserts or replaces a plan; returns true when it was new.
    pub async fn upsert_plan(
        &mut self,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = plan.id.as_str();
        let created = self.count(EXISTS_PLAN, id).await? == 0;
        on_tx!(self, c => sqlx::query(UPSERT_PLAN).bind(id).bind(doc_of(plan)).bind(now).execute(c).await.map(|r| r.rows_affected()))?;
        self.append_event(&upsert_event(
            "directory.plan.upserted",
            "plan",
            id,
            None,
            now,
            serde_json::json!({ "created": created }),
        ))
        .await?;
        Ok(created)
    }

    /// Inserts or replaces a member; the plan (and subscriber, for a family member)
    /// must exist. Returns true when the member was new.
    pub async fn upsert_member(
        &mut self,
        member: &Member,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = member.id.as_str();
        if self.count(EXISTS_PLAN, member.plan_id.as_str()).await? == 0 {
            return Err(StoreError::MissingReference {
                kind: "plan",
                id: member.plan_id.to_string(),
            });
        }
        if let Some(subscriber) = &member.subscriber_id
            && subscriber != &member.id
            && self.count(EXISTS_MEMBER, subscriber.as_str()).await? == 0
        {
            return Err(StoreError::MissingReference {
                kind: "member",
                id: subscriber.to_string(),
            });
        }
        let created = self.count(EXISTS_MEMBER, id).await? == 0;
        let subscriber = member.subscriber_id.as_ref().map(|s| s.as_str().to_owned());
        on_tx!(self, c => sqlx::query(UPSERT_MEMBER)
            .bind(id).bind(member.plan_id.as_str()).bind(subscriber.clone())
            .bind(doc_of(member)).bind(now).execute(c).await.map(|r| r.rows_affected()))?;
        self.append_event(&upsert_event(
            "directory.member.upserted",
            "member",
            id,
            Some(member.id.clone()),
            now,
            serde_json::json!({ "created": created }),
        ))
        .await?;
        Ok(created)
    }

    /// Inserts or replaces a provider with its networks and languages; returns true
    /// when it was new.
    pub async fn upsert_provider(
        &mut self,
        provider: &Provider,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let npi = provider.npi.as_str();
        for plan in &provider.in_network_plans {
            if self.count(EXISTS_PLAN, plan.as_str()).await? == 0 {
                return Err(StoreError::MissingReference {
                    kind: "plan",
                    id: plan.to_string(),
                });
            }
        }
        let created = self.count(EXISTS_PROVIDER, npi).await? == 0;
        let specialty = provider
            .specialty
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        on_tx!(self, c => sqlx::query(UPSERT_PROVIDER)
            .bind(npi).bind(provider.kind.as_str()).bind(specialty.clone())
            .bind(provider.address.country.as_str()).bind(doc_of(provider)).bind(now)
            .execute(c).await.map(|r| r.rows_affected()))?;
        on_tx!(self, c => sqlx::query("DELETE FROM provider_network WHERE npi = $1").bind(npi).execute(c).await.map(|r| r.rows_affected()))?;
        on_tx!(self, c => sqlx::query("DELETE FROM provider_language WHERE npi = $1").bind(npi).execute(c).await.map(|r| r.rows_affected()))?;
        for plan in &provider.in_network_plans {
            on_tx!(self, c => sqlx::query("INSERT INTO provider_network (npi, plan_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(npi).bind(plan.as_str()).execute(c).await.map(|r| r.rows_affected()))?;
        }
        for language in &provider.languages {
            on_tx!(self, c => sqlx::query("INSERT INTO provider_language (npi, language) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(npi).bind(language.as_str()).execute(c).await.map(|r| r.rows_affected()))?;
        }
        self.append_event(&upsert_event(
            "directory.provider.upserted",
            "provider",
            npi,
            None,
            now,
            serde_json::json!({ "created": created }),
        ))
        .await?;
        Ok(created)
    }

    /// Inserts or replaces a staff member; returns true when new.
    pub async fn upsert_staff(
        &mut self,
        staff: &Staff,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = staff.id.as_str();
        let created = self.count(EXISTS_STAFF, id).await? == 0;
        let specialty = staff
            .specialty
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        on_tx!(self, c => sqlx::query(UPSERT_STAFF)
            .bind(id).bind(staff.role.as_str()).bind(specialty.clone()).bind(doc_of(staff)).bind(now)
            .execute(c).await.map(|r| r.rows_affected()))?;
        self.append_event(&upsert_event(
            "directory.staff.upserted",
            "staff",
            id,
            None,
            now,
            serde_json::json!({ "created": created }),
        ))
        .await?;
        Ok(created)
    }
}

/// Counts of what an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub plans: usize,
    pub members: usize,
    pub providers: usize,
    pub staff: usize,
}

impl Store {
    /// Writes a whole directory bundle in one transaction: all of it or nothing.
    /// Subscribers are written before their family members.
    pub async fn import_directory(
        &self,
        bundle: &DirectoryBundle,
        now: DateTime<Utc>,
    ) -> Result<ImportSummary, StoreError> {
        let mut tx = self.begin().await?;
        for plan in &bundle.plans {
            tx.upsert_plan(plan, now).await?;
        }
        let (subscribers, dependants): (Vec<&Member>, Vec<&Member>) = bundle
            .members
            .iter()
            .partition(|m| m.subscriber_id.as_ref().is_none_or(|s| s == &m.id));
        for member in subscribers.into_iter().chain(dependants) {
            tx.upsert_member(member, now).await?;
        }
        for provider in &bundle.providers {
            tx.upsert_provider(provider, now).await?;
        }
        for staff in &bundle.staff {
            tx.upsert_staff(staff, now).await?;
        }
        tx.commit().await?;
        Ok(ImportSummary {
            plans: bundle.plans.len(),
            members: bundle.members.len(),
            providers: bundle.providers.len(),
            staff: bundle.staff.len(),
        })
    }

    async fn fetch_doc<T: DeserializeOwned>(
        &self,
        kind: &'static str,
        sql: &'static str,
        id: &str,
    ) -> Result<T, StoreError> {
        let doc: Option<Json<serde_json::Value>> =
            on_db!(self, c => sqlx::query_scalar(sql).bind(id).fetch_optional(c).await)?;
        match doc {
            Some(doc) => decode(kind, id, doc),
            None => Err(StoreError::NotFound {
                kind,
                id: id.to_owned(),
            }),
        }
    }

    pub async fn get_plan(&self, id: &PlanId) -> Result<Plan, StoreError> {
        self.fetch_doc("plan", "SELECT doc FROM plan WHERE id = $1", id.as_str())
            .await
    }

    pub async fn get_member(&self, id: &MemberId) -> Result<Member, StoreError> {
        self.fetch_doc(
            "member",
            "SELECT doc FROM member WHERE id = $1",
            id.as_str(),
        )
        .await
    }

    pub async fn get_provider(&self, npi: &Npi) -> Result<Provider, StoreError> {
        self.fetch_doc(
            "provider",
            "SELECT doc FROM provider WHERE npi = $1",
            npi.as_str(),
        )
        .await
    }

    pub async fn get_staff(&self, id: &StaffId) -> Result<Staff, StoreError> {
        self.fetch_doc("staff", "SELECT doc FROM staff WHERE id = $1", id.as_str())
            .await
    }

    async fn list_docs<T: DeserializeOwned>(
        &self,
        kind: &'static str,
        sql: &'static str,
        after: &str,
        filters: &[&str],
        page_size: u32,
    ) -> Result<Page<T>, StoreError> {
        let rows: Vec<(String, Json<serde_json::Value>)> = on_db!(self, c => {
            let mut q = sqlx::query_as(sql).bind(after);
            for f in filters {
                q = q.bind(*f);
            }
            q.bind(i64::from(page_size) + 1).fetch_all(c).await
        })?;
        let rows = rows
            .into_iter()
            .map(|(key, doc)| decode(kind, &key, doc).map(|item| (key, item)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(rows, page_size))
    }

    pub async fn list_plans(&self, after: &str, page_size: u32) -> Result<Page<Plan>, StoreError> {
        self.list_docs(
            "plan",
            "SELECT id, doc FROM plan WHERE id > $1 ORDER BY id LIMIT $2",
            after,
            &[],
            page_size,
        )
        .await
    }

    pub async fn list_members(
        &self,
        filter: &MemberFilter,
        after: &str,
        page_size: u32,
    ) -> Result<Page<Member>, StoreError> {
        let plan = filter.plan_id.as_ref().map_or("", |p| p.as_str());
        let subscriber = filter.subscriber_id.as_ref().map_or("", |s| s.as_str());
        self.list_docs(
            "member",
            "SELECT id, doc FROM member WHERE id > $1
               AND ($2 = '' OR plan_id = $2) AND ($3 = '' OR subscriber_id = $3)
             ORDER BY id LIMIT $4",
            after,
            &[plan, subscriber],
            page_size,
        )
        .await
    }

    pub async fn list_providers(
        &self,
        filter: &ProviderFilter,
        after: &str,
        page_size: u32,
    ) -> Result<Page<Provider>, StoreError> {
        let f = |o: &Option<String>| o.clone().unwrap_or_default();
        let (specialty, kind, country, plan, language) = (
            f(&filter.specialty),
            f(&filter.kind),
            f(&filter.country),
            f(&filter.in_network_for_plan),
            f(&filter.language),
        );
        self.list_docs(
            "provider",
            "SELECT npi, doc FROM provider p WHERE npi > $1
               AND ($2 = '' OR specialty = $2) AND ($3 = '' OR kind = $3) AND ($4 = '' OR country = $4)
               AND ($5 = '' OR EXISTS (SELECT 1 FROM provider_network n WHERE n.npi = p.npi AND n.plan_id = $5))
               AND ($6 = '' OR EXISTS (SELECT 1 FROM provider_language l WHERE l.npi = p.npi AND l.language = $6))
             ORDER BY npi LIMIT $7",
            after,
            &[&specialty, &kind, &country, &plan, &language],
            page_size,
        )
        .await
    }

    pub async fn list_staff(
        &self,
        filter: &StaffFilter,
        after: &str,
        page_size: u32,
    ) -> Result<Page<Staff>, StoreError> {
        let role = filter.role.clone().unwrap_or_default();
        let specialty = filter.specialty.clone().unwrap_or_default();
        self.list_docs(
            "staff",
            "SELECT id, doc FROM staff WHERE id > $1
               AND ($2 = '' OR role = $2) AND ($3 = '' OR specialty = $3)
             ORDER BY id LIMIT $4",
            after,
            &[&role, &specialty],
            page_size,
        )
        .await
    }
}
