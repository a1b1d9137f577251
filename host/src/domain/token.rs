//! Who may call: the roles and a stored token's record (its secret is
//! never stored, only its SHA-256; `auth/token.rs`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a token's holder may do (`auth/scope.rs` has the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: pools, plugins, limits, tokens, and all an operator may do.
    Admin,
    /// Queues, deployments, cancelling runs, and all a submitter may do.
    Operator,
    /// Creating and reading runs, within its team's deployments and its pools.
    Submitter,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Submitter];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Submitter => "submitter",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// A stored token, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub team: Option<String>,
    pub pools: Vec<String>,
    /// `weir_` and the first characters of the token, to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}
