//! A reset asked for while the gateway runs (the admin page, the reset
//! button), handed to the loop in `cli::run` that stops the gateway in
//! order and carries it out.

use super::Plan;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The one place a running gateway's reset is asked for; cheap to clone.
#[derive(Clone, Default)]
pub struct Requests {
    inner: Arc<(Mutex<Option<Requested>>, Notify)>,
}

/// A reset asked for, with its plan.
#[derive(Debug, Clone)]
pub struct Requested {
    pub plan: Plan,
}

impl Requests {
    /// Asks for the reset `plan`; a second request before the first was
    /// taken replaces it (the same box, the same reset).
    pub fn request(&self, plan: Plan) {
        let (slot, notify) = &*self.inner;
        *slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Requested { plan });
        notify.notify_one();
    }

    /// Waits for a request and takes it.
    pub async fn requested(&self) -> Requested {
        let (slot, notify) = &*self.inner;
        loop {
            let taken = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(r) = taken {
                return r;
            }
            notify.notified().await;
        }
    }

    /// Whether a reset was asked for and not taken yet.
    pub fn pending(&self) -> bool {
        let (slot, _) = &*self.inner;
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }
}
