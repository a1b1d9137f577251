//! Roles, actions and the one table saying which role may do what; the
//! resource checks a submitter's team and pools and a run token's run add.

use super::AuthError;
use crate::domain::{Run, RunId};

pub(crate) use crate::domain::Role;

/// What a request does; each API route maps to one (`api/auth.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// GET on pools, queues, limits, deployments, plugins, bindings, routers,
    /// base job templates; rendering a deployment (a preview).
    ReadConfig,
    ManagePools,
    ManagePlugins,
    ManageLimits,
    ManageQueues,
    ManageDeployments,
    CreateRun,
    ReadRuns,
    CancelRun,
    ManageTokens,
    ReadMetrics,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::ReadConfig,
        Action::ManagePools,
        Action::ManagePlugins,
        Action::ManageLimits,
        Action::ManageQueues,
        Action::ManageDeployments,
        Action::CreateRun,
        Action::ReadRuns,
        Action::CancelRun,
        Action::ManageTokens,
        Action::ReadMetrics,
    ];

    fn describe(self) -> &'static str {
        match self {
            Action::ReadConfig => "read configuration",
            Action::ManagePools => "manage pools",
            Action::ManagePlugins => "manage plugins",
            Action::ManageLimits => "manage tag limits",
            Action::ManageQueues => "manage queues",
            Action::ManageDeployments => "manage deployments",
            Action::CreateRun => "create runs",
            Action::ReadRuns => "read runs",
            Action::CancelRun => "cancel runs",
            Action::ManageTokens => "manage tokens",
            Action::ReadMetrics => "read metrics",
        }
    }
}

/// THE table: what each role may do. Resource limits (a submitter's team
/// and pools) come on top, in [`Principal::may_create_run`] and
/// [`Principal::may_read_run`].
pub(super) fn role_allows(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Admin => true,
        Role::Operator => matches!(
            action,
            ReadConfig
                | ManageQueues
                | ManageDeployments
                | CreateRun
                | ReadRuns
                | CancelRun
                | ReadMetrics
        ),
        Role::Submitter => matches!(action, ReadConfig | CreateRun | ReadRuns | ReadMetrics),
    }
}

/// A stored token's role and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunScope {
    pub token_id: String,
    pub role: Role,
    /// Submitters: only deployments of this team.
    pub team: Option<String>,
    /// Submitters: only runs that end in these pools (empty: any pool).
    pub pools: Vec<String>,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Auth is off: everything is allowed.
    Anyone,
    /// A stored bearer token.
    Token(RunScope),
    /// A run token: may read its run and create children of it.
    Run(RunId),
}

impl Principal {
    /// Whether the caller may do `action` at all.
    pub fn require(&self, action: Action) -> Result<(), AuthError> {
        match self {
            Principal::Anyone => Ok(()),
            Principal::Token(scope) if role_allows(scope.role, action) => Ok(()),
            Principal::Token(scope) => Err(AuthError::forbidden(format!(
                "{} tokens cannot {}",
                scope.role.as_str(),
                action.describe()
            ))),
            Principal::Run(_) if matches!(action, Action::CreateRun | Action::ReadRuns) => Ok(()),
            Principal::Run(run) => Err(AuthError::forbidden(format!(
                "the run token of run {run} can only read that run and create its child runs, \
                 not {}",
                action.describe()
            ))),
        }
    }

    /// Checks a run about to be stored: its deployment (name and team) and
    /// the pool it ends in after routing, and its parent.
    pub fn may_create_run(
        &self,
        deployment: Option<(&str, Option<&str>)>,
        pool: &str,
        parent: Option<RunId>,
    ) -> Result<(), AuthError> {
        self.require(Action::CreateRun)?;
        match self {
            Principal::Anyone => Ok(()),
            Principal::Run(run) => match parent {
                Some(p) if p == *run => Ok(()),
                Some(p) => Err(AuthError::forbidden(format!(
                    "the run token of run {run} can only create child runs of that run, \
                     not of {p}"
                ))),
                None => Err(AuthError::forbidden(format!(
                    "the run token of run {run} can only create child runs of that run: \
                     set parent_run_id to {run}"
                ))),
            },
            Principal::Token(scope) if scope.role != Role::Submitter => Ok(()),
            Principal::Token(scope) => scope.check_submit(deployment, pool),
        }
    }

    /// Whether the caller may see `run` (of a deployment of `team`).
    /// Handlers answer 404 for a submitter's out-of-scope run (its existence
    /// is not revealed) and 403 for a run token.
    pub fn may_read_run(&self, run: &Run, team: Option<&str>) -> Result<(), AuthError> {
        self.require(Action::ReadRuns)?;
        match self {
            Principal::Anyone => Ok(()),
            Principal::Run(own) if *own == run.id => Ok(()),
            Principal::Run(own) => Err(AuthError::forbidden(format!(
                "the run token of run {own} can only read that run, not {}",
                run.id
            ))),
            Principal::Token(scope) if scope.role != Role::Submitter => Ok(()),
            Principal::Token(scope) => scope
                .check_submit(run.deployment.as_deref().map(|d| (d, team)), &run.pool)
                .map_err(|_| {
                    AuthError::forbidden(format!(
                        "run {} is outside this submitter token's team and pools",
                        run.id
                    ))
                }),
        }
    }

    /// True when reads of runs must be filtered (a team- or pool-bound
    /// submitter).
    pub fn is_scoped_submitter(&self) -> bool {
        matches!(self, Principal::Token(s) if s.role == Role::Submitter)
    }
}

impl RunScope {
    fn check_submit(
        &self,
        deployment: Option<(&str, Option<&str>)>,
        pool: &str,
    ) -> Result<(), AuthError> {
        let team_text = |t: Option<&str>| t.map_or("no team".to_owned(), |t| format!("team {t}"));
        match (deployment, &self.team) {
            (Some((name, team)), Some(mine)) if team != Some(mine.as_str()) => {
                return Err(AuthError::forbidden(format!(
                    "submitter tokens of team {mine} cannot create or read runs of deployment \
                     {name} ({})",
                    team_text(team)
                )));
            }
            (None, _) if self.pools.is_empty() => {
                return Err(AuthError::forbidden(
                    "submitter tokens without --pool cannot create or read raw-job runs \
                     (runs without a deployment)",
                ));
            }
            _ => {}
        }
        if !self.pools.is_empty() && !self.pools.iter().any(|p| p == pool) {
            return Err(AuthError::forbidden(format!(
                "this submitter token is limited to pools {}; the run is in pool {pool}",
                self.pools.join(", ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks every (role, action) pair against the table the docs state.
    #[test]
    fn the_role_table_is_exactly_as_documented() {
        use Action::*;
        for role in Role::ALL {
            for action in Action::ALL {
                let expected = match role {
                    Role::Admin => true,
                    Role::Operator => !matches!(
                        action,
                        ManagePools | ManagePlugins | ManageLimits | ManageTokens
                    ),
                    Role::Submitter => {
                        matches!(action, ReadConfig | CreateRun | ReadRuns | ReadMetrics)
                    }
                };
                assert_eq!(role_allows(role, action), expected, "{role:?} {action:?}");
                let principal = Principal::Token(RunScope {
                    token_id: "t".into(),
                    role,
                    team: None,
                    pools: vec![],
                });
                assert_eq!(principal.require(action).is_ok(), expected);
            }
        }
    }

    #[test]
    fn run_tokens_only_read_their_run_and_create_children() {
        let run = uuid::Uuid::now_v7();
        let other = uuid::Uuid::now_v7();
        let p = Principal::Run(run);
        for action in Action::ALL {
            assert_eq!(
                p.require(action).is_ok(),
                matches!(action, Action::CreateRun | Action::ReadRuns),
                "{action:?}"
            );
        }
        assert!(p.may_create_run(None, "any", Some(run)).is_ok());
        let e = p.may_create_run(None, "any", Some(other)).unwrap_err();
        assert!(e.to_string().contains("only create child runs"), "{e}");
        assert!(p.may_create_run(None, "any", None).is_err());
    }

    #[test]
    fn submitters_are_held_to_their_team_and_pools() {
        let team_a = Principal::Token(RunScope {
            token_id: "t".into(),
            role: Role::Submitter,
            team: Some("a".into()),
            pools: vec![],
        });
        assert!(
            team_a
                .may_create_run(Some(("x", Some("a"))), "p", None)
                .is_ok()
        );
        let e = team_a
            .may_create_run(Some(("y", Some("b"))), "p", None)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "submitter tokens of team a cannot create or read runs of deployment y (team b)"
        );
        assert!(team_a.may_create_run(Some(("z", None)), "p", None).is_err());
        assert!(team_a.may_create_run(None, "p", None).is_err());

        let pool_p = Principal::Token(RunScope {
            token_id: "t".into(),
            role: Role::Submitter,
            team: None,
            pools: vec!["p".into()],
        });
        assert!(pool_p.may_create_run(None, "p", None).is_ok());
        assert!(
            pool_p
                .may_create_run(Some(("y", Some("b"))), "p", None)
                .is_ok()
        );
        let e = pool_p.may_create_run(None, "q", None).unwrap_err();
        assert!(e.to_string().contains("limited to pools p"), "{e}");

        // Operators and admins are not held to a team.
        let operator = Principal::Token(RunScope {
            token_id: "t".into(),
            role: Role::Operator,
            team: Some("a".into()),
            pools: vec![],
        });
        assert!(
            operator
                .may_create_run(Some(("y", Some("b"))), "q", None)
                .is_ok()
        );
        assert!(Principal::Anyone.may_create_run(None, "q", None).is_ok());
    }
}
