use chrono::{DateTime, Utc};
use serde::Serialize;

/// A named tag limit: at most `limit` runs carrying `tag` hold a slot at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConcurrencyLimit {
    pub tag: String,
    pub limit: u32,
    pub created_at: DateTime<Utc>,
}
