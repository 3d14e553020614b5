//! Notifications: the outbox consumer that turns events into stored notices
//! ([`handler`]), the dispatcher that delivers them ([`dispatcher`]), the adapter that
//! gives precertification events the words notices need ([`precert_payload`]), the
//! reads of a batch of events made once ([`reads`]), their settings ([`settings`]), and the notice use cases with the one visibility policy
//! ([`notices`]).

pub mod dispatcher;
pub mod handler;
pub mod notices;
pub mod precert_payload;
pub mod reads;
pub mod settings;

use carepath_notify::Destination;

pub use self::{
    dispatcher::{Dispatcher, run_dispatcher},
    handler::NotifyHandler,
    notices::{
        ChannelCounts, DeliveryReport, ListFailedNotices, ListNotices, Notice, NoticeState,
        Notices, RECORD_KIND, ReportPeriod, ResendNotice, Standing, standing,
    },
    settings::{DispatchOptions, NotifySettings, SettingsError},
};
use crate::App;

/// The notification area's parts, built once at start from the shipped rules and
/// templates (validated on load) and the channel settings.
#[derive(Debug, Clone)]
pub struct NotifyArea {
    /// The notice use cases.
    pub notices: Notices,
    /// The outbox consumer that stores the notices events call for.
    pub handler: NotifyHandler,
    /// Delivers stored notices.
    pub dispatcher: Dispatcher,
}

/// Why the area could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The shipped notice rules are not valid.
    #[error("notice rules: {0}")]
    Rules(#[from] carepath_notify::RulesErrors),
    /// The shipped templates are not valid, or do not cover the rules.
    #[error("notice templates: {0}")]
    Templates(#[from] carepath_notify::TemplateErrors),
    /// A channel cannot be set up.
    #[error("{0}")]
    Settings(#[from] SettingsError),
}

impl NotifyArea {
    /// Takes the rules and templates in force ([`crate::data::current`]), checks the
    /// one against the other, and sets up the channels; any problem stops the start.
    pub fn new(app: App, settings: &NotifySettings) -> Result<Self, NotifyError> {
        let data = crate::data::current();
        let rules = data.notice_rules;
        let catalog = data.templates;
        catalog.check_rules(&rules)?;
        let channels = settings.channels()?;
        Ok(NotifyArea {
            notices: Notices::new(app.clone(), catalog.clone()),
            handler: NotifyHandler {
                store: app.store.clone(),
                clock: app.clock.clone(),
                rules,
                catalog,
            },
            dispatcher: Dispatcher {
                store: app.store.clone(),
                clock: app.clock.clone(),
                channels,
                retry: settings.retry,
                options: settings.dispatch,
            },
        })
    }
}

/// Where a notice went, as shown to people.
pub fn destination_text(d: &Destination) -> String {
    match d {
        Destination::Email { address } => address.clone(),
        Destination::Fax { number } => number.clone(),
        Destination::Mail { address } => {
            let mut lines = address.lines.clone();
            lines.push(address.country.to_string());
            lines.join(", ")
        }
        Destination::Portal { inbox } => format!("portal inbox {inbox}"),
    }
}
