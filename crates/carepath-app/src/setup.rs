//! Opening an application: the store, the directory, and the [`App`] every use case
//! takes.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use carepath_app::setup;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("sqlite://{}", dir.path().join("carepath.db").display());
//! let store = setup::open_store(&url).await.unwrap();
//! let app = setup::embedded(store, &dir.path().join("carepath.key.pem")).unwrap();
//! let loaded = setup::load_demo(&app).await.unwrap();
//! assert_eq!(loaded.members, 20);
//! # });
//! ```

use std::{path::Path, sync::Arc};

use carepath_core::{Clock, DirectoryBundle, SystemClock};
use carepath_store::{ImportSummary, Store};

use crate::{
    App,
    auth::{Authenticator, KeyError},
    error::{AppError, AppResult},
};

/// Connects to the database at `url` (`sqlite://path` or `postgres://...`), applies
/// the migrations it lacks, and brings stored documents written in an earlier shape
/// up to date (oncology plans: [`crate::oncology::upgrade_stored_plans`]).
pub async fn open_store(url: &str) -> AppResult<Store> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    crate::oncology::upgrade_stored_plans(&store, &crate::data::current().oncology).await?;
    Ok(store)
}

/// An application over `store` on the wall clock and the business calendar in force
/// ([`crate::data::current`]: the shipped US federal one unless a data directory
/// replaces it), verifying tokens with `auth`.
pub fn app(store: Store, auth: Authenticator) -> App {
    App {
        store,
        clock: Arc::new(SystemClock),
        calendar: crate::data::current().calendar,
        auth: Arc::new(auth),
        refusals: Arc::default(),
        directory: Arc::default(),
        outside_copies: Default::default(),
    }
}

/// An embedded application: [`app`] with the instance's own signing key at
/// `key_path` (made, readable by the owner only, when it does not exist).
pub fn embedded(store: Store, key_path: &Path) -> Result<App, KeyError> {
    Ok(app(store, Authenticator::with_local_key(key_path)?))
}

/// Validates a directory bundle against today's date and imports it in one
/// transaction: all of it or, with any entry invalid, nothing.
pub async fn import_directory(
    store: &Store,
    clock: &dyn Clock,
    bundle: &DirectoryBundle,
) -> AppResult<ImportSummary> {
    let now = clock.now();
    bundle.validate(now.date_naive())?;
    Ok(store.import_directory(bundle, now).await?)
}

/// Loads the shipped demo directory (plans, members, providers, staff) into the
/// application's store; loading it again replaces the same entries.
pub async fn load_demo(app: &App) -> AppResult<ImportSummary> {
    let bundle = DirectoryBundle::demo().map_err(|e| AppError::Internal(e.to_string()))?;
    import_directory(&app.store, app.clock.as_ref(), &bundle).await
}
