//! The site model the service runs on, changed through the API (unit
//! states) by the same path as a reload of the configuration file: the
//! changed model goes to the feeder, in order with the readings.

use std::sync::{Arc, Mutex, MutexGuard};

use hazardwatch_rules::SiteModel;
use hazardwatch_rules::site::UnitState;
use tokio::sync::mpsc;

use crate::pipeline::FeedMsg;

/// Changes the running site model through the API (unit states), by the
/// same path as a reload of the file.
#[derive(Clone)]
pub struct LiveSite {
    site: Arc<Mutex<SiteModel>>,
    /// Weak, so that the feeder still ends when the service stops.
    feed: mpsc::WeakSender<FeedMsg>,
}

impl LiveSite {
    /// The running `site`, whose changes go to the feeder through `feed`.
    pub(crate) fn new(site: SiteModel, feed: &mpsc::Sender<FeedMsg>) -> LiveSite {
        LiveSite {
            site: Arc::new(Mutex::new(site)),
            feed: feed.downgrade(),
        }
    }

    /// A copy of the running site model (its tables are shared).
    pub(crate) fn snapshot(&self) -> SiteModel {
        self.site().clone()
    }

    /// The running site model.
    fn site(&self) -> MutexGuard<'_, SiteModel> {
        self.site.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a unit's operating state from the current watermark on;
    /// returns the state it had and its enterprise and hazard source, or
    /// `None` for a unit that is unknown or whose enterprise is not
    /// `allowed`.
    pub async fn set_unit_state(
        &self,
        unit: &str,
        state: UnitState,
        allowed: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Option<(UnitState, [String; 2])>> {
        let (before, place, model) = {
            let mut site = self.site();
            let Some(u) = site.catalog.unit_lookup(unit) else {
                return Ok(None);
            };
            let meta = site.catalog.unit(u);
            if !allowed(&meta.enterprise) {
                return Ok(None);
            }
            let place = [meta.enterprise.to_string(), meta.hazard_source.to_string()];
            let Some(rules) = site.units.get_mut(u as usize) else {
                return Ok(None);
            };
            let before = std::mem::replace(&mut rules.state, state);
            (before, place, site.clone())
        };
        let stopping = || anyhow::anyhow!("the service is stopping");
        let feed = self.feed.upgrade().ok_or_else(stopping)?;
        feed.send(FeedMsg::Reload(Box::new(model)))
            .await
            .map_err(|_| stopping())?;
        Ok(Some((before, place)))
    }

    /// Replaces the running model (after a reload of the file).
    pub(crate) fn replace(&self, site: SiteModel) {
        *self.site() = site;
    }
}
