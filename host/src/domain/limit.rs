use chrono::{DateTime, Utc};
use serde::Serialize;

/// A named tag limit: at most `limit` runs carrying `tag` hold a slot at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConcurrencyLimit {
    pub tag: String,
    pub limit: u32,
    pub created_at: DateTime<Utc>,
}

/// One kind of slot a released run holds until it ends. A run holds one slot
/// of its pool, one of its queue, and one per tag that has a limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlotKey {
    Pool(String),
    Queue { pool: String, queue: String },
    Tag(String),
}

impl SlotKey {
    /// The (kind, key) pair stored in the `slots` table.
    pub fn to_row(&self) -> (&'static str, String) {
        match self {
            SlotKey::Pool(p) => ("pool", p.clone()),
            SlotKey::Queue { pool, queue } => ("queue", format!("{pool}/{queue}")),
            SlotKey::Tag(t) => ("tag", t.clone()),
        }
    }
}
