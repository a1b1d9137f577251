//! Who is calling and what they may do.
//!
//! - [`token`]: the bearer token formats: stored tokens (`weir_<hex>`, kept
//!   only as a SHA-256 hash) and run tokens (`weirrun_<run id>_<hmac>`,
//!   derived from a server secret, never stored).
//! - [`scope`]: [`Role`], [`Action`], the one table of what each role may do
//!   ([`role_allows`]) and [`Principal`], the authenticated caller, with the
//!   resource checks (a submitter's team and pools, a run token's run).
//!
//! No HTTP here: `api/auth.rs` reads the header, asks the [`Authenticator`]
//! for the principal and maps [`AuthError`] to 401/403.

mod scope;
mod token;

use std::sync::Arc;

use chrono::Utc;

use crate::domain::RunId;
use crate::store::{Store, StoreError};

pub(crate) use scope::{Action, Principal, Role};
pub(crate) use token::{
    NewToken, RUN_TOKEN_PREFIX, RunTokenKey, TokenRecord, generate_token, hash_token,
};

/// Why a request was refused. `Unauthenticated` is 401, `Forbidden` 403.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    pub fn forbidden(detail: impl Into<String>) -> Self {
        AuthError::Forbidden(detail.into())
    }
}

/// When the API asks for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    On,
    Off,
    /// On unless the server listens only on a loopback address.
    #[default]
    Auto,
}

impl AuthMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "on" => Some(AuthMode::On),
            "off" => Some(AuthMode::Off),
            "auto" => Some(AuthMode::Auto),
            _ => None,
        }
    }

    /// Whether auth is enforced for a server listening on `listen`.
    pub fn enabled(self, listen: std::net::SocketAddr) -> bool {
        match self {
            AuthMode::On => true,
            AuthMode::Off => false,
            AuthMode::Auto => !listen.ip().is_loopback(),
        }
    }
}

/// Turns a bearer token into a [`Principal`].
pub(crate) struct Authenticator {
    store: Arc<dyn Store>,
    run_key: RunTokenKey,
}

impl Authenticator {
    pub(crate) fn new(store: Arc<dyn Store>, run_key: RunTokenKey) -> Self {
        Self { store, run_key }
    }

    /// The principal a bearer token stands for; every failure is
    /// `Unauthenticated` with the reason (no token, unknown, revoked, ended
    /// run), never a hint of which tokens exist.
    pub(crate) async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, AuthError> {
        let Some(text) = bearer else {
            return Err(AuthError::Unauthenticated(
                "this API needs a token: send Authorization: Bearer <token> \
                 (weir --token or WEIR_TOKEN)"
                    .into(),
            ));
        };
        if text.starts_with(RUN_TOKEN_PREFIX) {
            let run = self
                .run_key
                .verify(text)
                .ok_or_else(|| AuthError::Unauthenticated("the run token is not valid".into()))?;
            return self.live_run(run).await.map(Principal::Run);
        }
        // Looked up by its SHA-256: the comparison happens on the hash inside
        // the database index, so timing reveals nothing about the token
        // itself (an attacker would need a preimage of the hash).
        let record = self
            .store
            .token_by_hash(&hash_token(text))
            .await?
            .ok_or_else(|| AuthError::Unauthenticated("unknown token".into()))?;
        if let Some(at) = record.revoked_at {
            return Err(AuthError::Unauthenticated(format!(
                "token {} was revoked at {}",
                record.id,
                at.to_rfc3339()
            )));
        }
        Ok(Principal::Token(record.scope()))
    }

    /// A run token is good only while its run has not ended.
    async fn live_run(&self, run: RunId) -> Result<RunId, AuthError> {
        match self.store.get_run(run, false).await {
            Ok(r) if r.state.is_terminal() => Err(AuthError::Unauthenticated(format!(
                "the run token of run {run} expired when the run ended ({})",
                r.state.as_str()
            ))),
            Ok(_) => Ok(run),
            Err(StoreError::NotFound { .. }) => Err(AuthError::Unauthenticated(
                "the run token is not valid".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates and stores a token; the returned text is shown once.
    pub(crate) async fn create_token(
        store: &dyn Store,
        new: NewToken,
    ) -> Result<(TokenRecord, String), AuthError> {
        let (text, hash, prefix) = generate_token()?;
        let record = TokenRecord {
            id: uuid::Uuid::now_v7().to_string(),
            name: new.name,
            role: new.role,
            team: new.team,
            pools: new.pools,
            prefix,
            created_at: Utc::now(),
            revoked_at: None,
        };
        store.create_token(&record, &hash).await?;
        Ok((record, text))
    }
}

/// The name of the run-token key in `server_secrets`.
pub(crate) const RUN_TOKEN_SECRET: &str = "run_token_key";

/// Reads the run-token key, creating it on first use (insert-if-absent, so
/// replicas sharing a database agree on one key).
pub(crate) async fn run_token_key(store: &dyn Store) -> Result<RunTokenKey, AuthError> {
    let candidate = token::random_hex()?;
    let value = store.server_secret(RUN_TOKEN_SECRET, &candidate).await?;
    RunTokenKey::from_hex(&value)
        .ok_or_else(|| AuthError::Store(StoreError::Corrupt("the run token key is not hex".into())))
}
