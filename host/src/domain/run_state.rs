//! The run state machine. This module owns the transition table: every state
//! change in Weir goes through [`RunState::check_transition`].

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunState {
    /// Waiting for its scheduled time, its turn and free slots.
    Scheduled,
    /// A Scheduled run still waiting past the late threshold.
    Late,
    /// Released: holds its slots while the backend starts it.
    Pending,
    Running,
    Completed,
    /// The job ran and failed (non-zero exit, Job failed, render error).
    Failed,
    /// The infrastructure failed (timeout, signal, host lost the process).
    Crashed,
    /// Cancel requested for a released run; the backend is stopping it.
    Cancelling,
    Cancelled,
    /// Failed or crashed with retries left; waits for its retry time.
    AwaitingRetry,
}

/// An attempted state change that the table forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a run cannot go from {from} to {to}")]
pub struct IllegalTransition {
    pub from: RunState,
    pub to: RunState,
}

impl RunState {
    pub const ALL: [RunState; 10] = [
        RunState::Scheduled,
        RunState::Late,
        RunState::Pending,
        RunState::Running,
        RunState::Completed,
        RunState::Failed,
        RunState::Crashed,
        RunState::Cancelling,
        RunState::Cancelled,
        RunState::AwaitingRetry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Scheduled => "Scheduled",
            RunState::Late => "Late",
            RunState::Pending => "Pending",
            RunState::Running => "Running",
            RunState::Completed => "Completed",
            RunState::Failed => "Failed",
            RunState::Crashed => "Crashed",
            RunState::Cancelling => "Cancelling",
            RunState::Cancelled => "Cancelled",
            RunState::AwaitingRetry => "AwaitingRetry",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// No transition leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Completed | RunState::Failed | RunState::Crashed | RunState::Cancelled
        )
    }

    /// States whose runs hold concurrency slots.
    pub fn holds_slots(self) -> bool {
        matches!(
            self,
            RunState::Pending | RunState::Running | RunState::Cancelling
        )
    }

    /// States the scheduler may release.
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            RunState::Scheduled | RunState::Late | RunState::AwaitingRetry
        )
    }

    /// The transition table.
    pub fn can_transition_to(self, to: RunState) -> bool {
        use RunState::*;
        match self {
            // Failed before release: refused by an admission plugin.
            Scheduled => matches!(to, Late | Pending | Cancelled | Failed),
            Late => matches!(to, Pending | Cancelled | Failed),
            AwaitingRetry => matches!(to, Pending | Cancelled),
            // A fast job may finish before its start was observed, and a job
            // that cannot be built fails or crashes while still Pending.
            Pending => matches!(
                to,
                Running | Completed | Failed | Crashed | Cancelling | AwaitingRetry
            ),
            Running => matches!(
                to,
                Completed | Failed | Crashed | Cancelling | AwaitingRetry
            ),
            // The job may finish on its own before the stop takes effect; the
            // true outcome is recorded.
            Cancelling => matches!(to, Cancelled | Completed | Failed | Crashed),
            Completed | Failed | Crashed | Cancelled => false,
        }
    }

    pub fn check_transition(self, to: RunState) -> Result<(), IllegalTransition> {
        if self.can_transition_to(to) {
            Ok(())
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::RunState::*;
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in RunState::ALL {
            assert_eq!(RunState::parse(s.as_str()), Some(s));
        }
        assert_eq!(RunState::parse("scheduled"), None);
    }

    #[test]
    fn terminal_states_have_no_exit() {
        for from in RunState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in RunState::ALL {
                assert!(from.check_transition(to).is_err(), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn no_state_transitions_to_itself() {
        for s in RunState::ALL {
            assert!(!s.can_transition_to(s), "{s}");
        }
    }

    #[test]
    fn slots_are_only_taken_by_release_and_given_back_on_leaving() {
        // Entering a slot-holding state is only possible from a waiting state
        // (release) or from another slot-holding state.
        for from in RunState::ALL {
            for to in RunState::ALL {
                if from.can_transition_to(to) && to.holds_slots() && !from.holds_slots() {
                    assert!(from.is_waiting(), "{from} -> {to} would take slots");
                    assert_eq!(to, Pending, "release always goes to Pending");
                }
            }
        }
    }

    #[test]
    fn expected_paths() {
        for (from, to) in [
            (Scheduled, Pending),
            (Scheduled, Late),
            (Late, Pending),
            (Pending, Running),
            (Running, Completed),
            (Running, Failed),
            (Running, Crashed),
            (Running, AwaitingRetry),
            (AwaitingRetry, Pending),
            (Running, Cancelling),
            (Cancelling, Cancelled),
            (Scheduled, Cancelled),
            (Scheduled, Failed),
        ] {
            assert!(from.check_transition(to).is_ok(), "{from} -> {to}");
        }
        for (from, to) in [
            (Scheduled, Running),
            (Scheduled, Completed),
            (Scheduled, Crashed),
            (Late, Scheduled),
            (Running, Pending),
            (Running, Scheduled),
            (Cancelling, Running),
            (Completed, Scheduled),
        ] {
            let err = from.check_transition(to).expect_err("illegal");
            assert_eq!(
                err.to_string(),
                format!("a run cannot go from {from} to {to}")
            );
        }
    }
}
