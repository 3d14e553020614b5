//! The precertification engine's live state: the rule book (shipped lists plus those
//! admins activated, swapped atomically so a new version applies without a restart)
//! and the gold-card exemptions in force.

use std::sync::{Arc, RwLock};

use carepath_precert::{
    Exemption, GoldCards, LoadErrors, RuleBook, RuleList, ServiceDates, shipped,
};
use carepath_store::{RuleListRecord, Store, StoreError};

/// Where a loaded list came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListOrigin {
    Shipped,
    Activated { by: String },
}

/// A list version (id, version) and where it came from.
type Origin = (String, String, ListOrigin);

/// Rules and exemptions, shared by the precertification and oncology services.
#[derive(Debug)]
pub struct PrecertEngine {
    rules: RwLock<Arc<RuleBook>>,
    /// Which dates of service requests may carry (`--service-date-max-days-ahead`).
    service_dates: ServiceDates,
    origins: RwLock<Vec<Origin>>,
    gold_cards: RwLock<Arc<GoldCards>>,
    /// Held by whatever makes engine state from the database (an activation from
    /// validation to install, a gold-card evaluation from reading decisions to setting
    /// exemptions, a refresh), so none sets state read before another's write.
    updating: tokio::sync::Mutex<()>,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("stored rule lists do not load: {0}")]
    Rules(LoadErrors),
}

impl PrecertEngine {
    /// The shipped lists plus every list activated in `store`, and the exemptions the
    /// last gold-card evaluation granted.
    pub async fn load(store: &Store) -> Result<Arc<Self>, EngineError> {
        Self::load_with(store, ServiceDates::default()).await
    }

    /// [`PrecertEngine::load`], with the dates of service requests may carry.
    pub async fn load_with(
        store: &Store,
        service_dates: ServiceDates,
    ) -> Result<Arc<Self>, EngineError> {
        let (rules, origins, gold_cards) = Self::read(store).await?;
        Ok(Arc::new(PrecertEngine {
            rules: RwLock::new(Arc::new(rules)),
            service_dates,
            origins: RwLock::new(origins),
            gold_cards: RwLock::new(Arc::new(gold_cards)),
            updating: tokio::sync::Mutex::new(()),
        }))
    }

    /// Reads `store` again and makes what it holds current: lists another process
    /// activated and the exemptions of its latest gold-card evaluation. Serving
    /// binaries call it every minute, so processes sharing a database agree within
    /// one. On an error the engine keeps what it has.
    pub async fn refresh(&self, store: &Store) -> Result<(), EngineError> {
        let _updating = self.updating().await;
        let (rules, origins, gold_cards) = Self::read(store).await?;
        *self.rules.write().expect("rules lock") = Arc::new(rules);
        *self.origins.write().expect("origins lock") = origins;
        self.set_gold_cards(gold_cards);
        Ok(())
    }

    async fn read(store: &Store) -> Result<(RuleBook, Vec<Origin>, GoldCards), EngineError> {
        let base = shipped();
        let mut lists: Vec<RuleList> = base.lists().to_vec();
        let mut origins: Vec<_> = lists
            .iter()
            .map(|l| (l.id.clone(), l.version.clone(), ListOrigin::Shipped))
            .collect();
        for record in store.rule_lists().await? {
            let list = RuleList::from_toml(&record.source_name, &record.source)
                .map_err(EngineError::Rules)?;
            origins.push((
                list.id.clone(),
                list.version.clone(),
                ListOrigin::Activated {
                    by: record.activated_by.clone(),
                },
            ));
            lists.push(list);
        }
        let rules = RuleBook::from_lists(lists).map_err(EngineError::Rules)?;
        let exemptions = store
            .gold_cards(None)
            .await?
            .into_iter()
            .filter(|c| c.exempt)
            .filter_map(|c| serde_json::from_str::<Exemption>(&c.exemption).ok())
            .collect::<Vec<_>>();
        Ok((rules, origins, GoldCards::new(exemptions)))
    }

    /// Which dates of service requests may carry.
    pub fn service_dates(&self) -> ServiceDates {
        self.service_dates
    }

    /// The rule book in force now; cheap (an `Arc` clone).
    pub fn rules(&self) -> Arc<RuleBook> {
        self.rules.read().expect("rules lock").clone()
    }

    pub fn gold_cards(&self) -> Arc<GoldCards> {
        self.gold_cards.read().expect("gold card lock").clone()
    }

    pub fn origin(&self, list_id: &str, version: &str) -> ListOrigin {
        self.origins
            .read()
            .expect("origins lock")
            .iter()
            .find(|(id, v, _)| id == list_id && v == version)
            .map_or(ListOrigin::Shipped, |(_, _, o)| o.clone())
    }

    /// Validates `list` together with the lists in force (overlaps are errors) and
    /// returns the book that would result.
    pub fn with_list(&self, list: RuleList) -> Result<RuleBook, LoadErrors> {
        let mut lists = self.rules().lists().to_vec();
        lists.push(list);
        RuleBook::from_lists(lists)
    }

    /// Serialises changes of engine state: an activation holds the guard from
    /// [`Self::with_list`] to [`Self::install`], a gold-card evaluation from reading
    /// decisions to [`Self::set_gold_cards`].
    pub async fn updating(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.updating.lock().await
    }

    /// Makes a validated book current.
    pub fn install(&self, book: RuleBook, record: &RuleListRecord) {
        *self.rules.write().expect("rules lock") = Arc::new(book);
        self.origins.write().expect("origins lock").push((
            record.list_id.clone(),
            record.version.clone(),
            ListOrigin::Activated {
                by: record.activated_by.clone(),
            },
        ));
    }

    pub fn set_gold_cards(&self, cards: GoldCards) {
        *self.gold_cards.write().expect("gold card lock") = Arc::new(cards);
    }
}

/// How often a serving process reads rule lists and gold cards from the database
/// again, so a list activated or cards evaluated by another process take effect.
pub const REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Refreshes `engine` from `store` every [`REFRESH_INTERVAL`] until `stop`.
pub async fn keep_fresh(
    engine: Arc<PrecertEngine>,
    store: Store,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REFRESH_INTERVAL) => {}
        }
        if let Err(e) = engine.refresh(&store).await {
            tracing::warn!(error = %e, "rule lists and gold cards not refreshed");
        }
    }
}
