//! Cancel: the one place a cancel is decided and delivered. A waiting run is
//! Cancelled at once; a released one goes to Cancelling, and whoever runs
//! its attempt stops it — this replica through [`InFlight`], the attempts it
//! has launched, or the leader, told over the replica bus.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::dispatcher::{DispatchError, Dispatcher, Result};
use crate::domain::{Run, RunId, RunState};
use crate::replica::Signal;
use crate::store::{StoreError, Transition};

/// The attempts this replica has in flight, each with the token that stops
/// it. The launcher registers an attempt before it builds the job and
/// forgets it when the attempt ends.
///
/// Its lock cannot be poisoned into losing a cancel: nothing that can panic
/// runs while it is held, and a poisoned lock is taken over as it is (the
/// map holds only tokens, valid in any state).
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    tokens: Mutex<HashMap<RunId, CancellationToken>>,
}

impl InFlight {
    fn map(&self) -> MutexGuard<'_, HashMap<RunId, CancellationToken>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a launch; its attempt watches the returned token.
    pub(crate) fn register(&self, id: RunId) -> CancellationToken {
        let token = CancellationToken::new();
        self.map().insert(id, token.clone());
        token
    }

    pub(crate) fn forget(&self, id: RunId) {
        self.map().remove(&id);
    }

    /// Stops the attempt in flight for `id`: `false` when there is none.
    pub(crate) fn cancel(&self, id: RunId) -> bool {
        match self.map().get(&id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

impl Dispatcher {
    /// Cancels a run: a waiting run is Cancelled at once; a released one goes
    /// to Cancelling and whoever runs its attempt stops it.
    pub async fn cancel_run(&self, id: RunId, cause: &str) -> Result<Run> {
        // The run may move on between the read and the write (released by
        // the scheduler, or ended): the store refuses the stale transition,
        // and the cancel is decided again from the state it moved to.
        let mut tries = 0;
        let updated = loop {
            tries += 1;
            match self.try_cancel(id, cause).await {
                Err(DispatchError::Store(StoreError::IllegalTransition(_))) if tries < 3 => {}
                other => break other?,
            }
        };
        self.wake_scheduler();
        Ok(self.store.get_run(updated.id, true).await?)
    }

    /// Cancels a run only while it still waits (not yet released), with
    /// `message` as the reason: a queue's late policy, a paused or removed
    /// schedule. A run released meanwhile is left to run; `Ok(false)`.
    pub(crate) async fn cancel_waiting(
        &self,
        id: RunId,
        message: String,
        cause: &str,
        detail: Option<serde_json::Value>,
    ) -> Result<bool> {
        let mut t = Transition::new(RunState::Cancelled, message, cause);
        t.detail = detail;
        match self.transition(id, t).await {
            Ok(_) => Ok(true),
            Err(DispatchError::Store(StoreError::IllegalTransition(_))) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn try_cancel(&self, id: RunId, cause: &str) -> Result<Run> {
        let run = self.store.get_run(id, false).await?;
        if run.state.is_terminal() || run.state == RunState::Cancelling {
            return Err(StoreError::conflict(
                Some("id"),
                format!("run {id} is already {}", run.state),
            )
            .into());
        }
        if run.state.is_waiting() {
            let t = Transition::new(RunState::Cancelled, "cancelled", cause);
            return self.transition(id, t).await;
        }
        let t = Transition::new(RunState::Cancelling, "cancel requested", cause);
        let updated = self.transition(id, t).await?;
        // Who stops the attempt: this replica if it has it in flight; else,
        // on a standby, the leader, told now; else (the leader, with the
        // launch not yet begun) the launch itself, which finds the run
        // Cancelling when it records its intent and submits nothing. The
        // leader's sweep of Cancelling runs is the safety net for all three.
        if !self.stop_in_flight(id) && !self.replicas().is_leader() {
            self.replicas().send(Signal::Cancel(id));
        }
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_registry_still_delivers_cancels() {
        let in_flight = std::sync::Arc::new(InFlight::default());
        let id = uuid::Uuid::now_v7();
        let token = in_flight.register(id);
        let poisoner = in_flight.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.tokens.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(in_flight.tokens.is_poisoned());
        assert!(in_flight.cancel(id));
        assert!(token.is_cancelled());
        in_flight.forget(id);
        assert!(!in_flight.cancel(id));
    }
}
