//! Recorded decision inputs (issue #16): what each plugin decision saw, kept
//! so a new version can be replayed against it (`pipeline::replay`).
//!
//! A decision is one `decision_inputs` row (who decided what, when, for
//! which run) naming its parts by digest; each part — the run's context, the
//! stats read, the binding's config and limits, the job a mutator was given
//! — is one `decision_blobs` row, compressed by the caller and stored once
//! however many decisions share it. The sweep keeps the newest `keep` rows
//! younger than a cutoff and then drops the parts no row names; a part
//! swept under a row written at the same moment (PostgreSQL) reads back as
//! missing, never as something else.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{AnyPool, Row};

use super::Result;
use super::commit::WriteTx;
use super::rows::{from_json, from_micros, micros, to_json, to_u32};
use crate::domain::BindingMode;

/// One stored part: its digest (of the uncompressed text) and its bytes as
/// stored (compressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub data: Vec<u8>,
}

/// One decision to record, its parts already encoded.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub plugin: String,
    pub world: String,
    pub mode: BindingMode,
    pub version: u32,
    pub digest: String,
    pub pool: String,
    /// The decision as made (a route, an admission decision, a patch, a
    /// reject, or `{"error": {kind, message}}`).
    pub outcome: Value,
    pub context: Blob,
    pub stats: Blob,
    pub binding: Blob,
    /// A mutator's input job; none for routers and admission.
    pub job: Option<Blob>,
}

/// Which recorded decisions to read, newest first.
#[derive(Debug, Clone)]
pub struct DecisionQuery {
    pub plugin: String,
    pub mode: BindingMode,
    pub pool: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
}

/// A recorded decision as read back: each part's stored bytes, `None` where
/// the part was swept.
#[derive(Debug, Clone)]
pub struct StoredDecision {
    pub id: i64,
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub world: String,
    pub version: u32,
    pub digest: String,
    pub pool: String,
    pub outcome: Value,
    pub context: Option<Vec<u8>>,
    pub stats: Option<Vec<u8>>,
    pub binding: Option<Vec<u8>>,
    /// `None`: no job was given; `Some(None)`: it was, and is swept.
    pub job: Option<Option<Vec<u8>>>,
}

/// How much the recorded inputs take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionsSize {
    pub decisions: u64,
    pub blobs: u64,
    /// The blobs' stored (compressed) bytes.
    pub blob_bytes: u64,
    /// The decision rows' column bytes (text as stored, integers as 8),
    /// without the database's own overhead.
    pub row_bytes: u64,
}

/// Rows and parts per statement: a batch is a few multi-row statements,
/// not one per part (each statement is a round trip to SQLite's worker
/// thread), well within both databases' limits on parameters.
const ROWS_PER_STATEMENT: usize = 200;
const BLOBS_PER_STATEMENT: usize = 500;

pub(super) async fn record(tx: &mut WriteTx, records: &[DecisionRecord]) -> Result<()> {
    // Each part once, however many decisions of the batch name it.
    let mut blobs: std::collections::BTreeMap<&str, &[u8]> = std::collections::BTreeMap::new();
    for r in records {
        let parts = [
            Some(&r.context),
            Some(&r.stats),
            Some(&r.binding),
            r.job.as_ref(),
        ];
        for b in parts.into_iter().flatten() {
            blobs.insert(&b.digest, &b.data);
        }
    }
    let blobs: Vec<(&str, &[u8])> = blobs.into_iter().collect();
    for chunk in blobs.chunks(BLOBS_PER_STATEMENT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO decision_blobs (digest, data) VALUES {} ON CONFLICT (digest) DO NOTHING",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (digest, data) in chunk {
            q = q.bind(*digest).bind(*data);
        }
        q.execute(&mut **tx).await?;
    }
    for chunk in records.chunks(ROWS_PER_STATEMENT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let cols: Vec<String> = (1..=13).map(|c| format!("${}", 13 * i + c)).collect();
                format!("({})", cols.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO decision_inputs (run_id, at, plugin, world, mode, version, digest, \
             pool, outcome, context, stats, binding, job) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(&r.run_id)
                .bind(micros(r.at))
                .bind(&r.plugin)
                .bind(&r.world)
                .bind(r.mode.as_str())
                .bind(i64::from(r.version))
                .bind(&r.digest)
                .bind(&r.pool)
                .bind(to_json(&r.outcome)?)
                .bind(&r.context.digest)
                .bind(&r.stats.digest)
                .bind(&r.binding.digest)
                .bind(r.job.as_ref().map(|b| b.digest.clone()));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

pub(super) async fn read(reader: &AnyPool, q: &DecisionQuery) -> Result<Vec<StoredDecision>> {
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT d.id, d.run_id, d.at, d.world, d.version, d.digest, d.pool, d.outcome, \
         d.job AS job_digest, c.data AS context, s.data AS stats, b.data AS binding, \
         j.data AS job \
         FROM decision_inputs d \
         LEFT JOIN decision_blobs c ON c.digest = d.context \
         LEFT JOIN decision_blobs s ON s.digest = d.stats \
         LEFT JOIN decision_blobs b ON b.digest = d.binding \
         LEFT JOIN decision_blobs j ON j.digest = d.job \
         WHERE d.plugin = $1 AND d.mode = $2 AND ($3 = '' OR d.pool = $3) AND d.at >= $4 \
         ORDER BY d.id DESC LIMIT $5",
    )
    .bind(&q.plugin)
    .bind(q.mode.as_str())
    .bind(q.pool.as_deref().unwrap_or(""))
    .bind(q.since.map(micros).unwrap_or(i64::MIN))
    .bind(limit)
    .fetch_all(reader)
    .await?;
    rows.iter()
        .map(|row| {
            let job_digest: Option<String> = row.try_get("job_digest")?;
            Ok(StoredDecision {
                id: row.try_get("id")?,
                run_id: row.try_get("run_id")?,
                at: from_micros(row.try_get("at")?)?,
                world: row.try_get("world")?,
                version: to_u32("version", row.try_get("version")?)?,
                digest: row.try_get("digest")?,
                pool: row.try_get("pool")?,
                outcome: from_json("outcome", &row.try_get::<String, _>("outcome")?)?,
                context: row.try_get("context")?,
                stats: row.try_get("stats")?,
                binding: row.try_get("binding")?,
                job: match job_digest {
                    None => None,
                    Some(_) => Some(row.try_get("job")?),
                },
            })
        })
        .collect()
}

/// Keeps the newest `keep` decisions recorded at or after `cutoff`; then
/// drops the parts no decision names. Returns (decisions, parts) deleted.
pub(super) async fn sweep(
    tx: &mut WriteTx,
    keep: u64,
    cutoff: DateTime<Utc>,
) -> Result<(u64, u64)> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let boundary: Option<i64> =
        sqlx::query_scalar("SELECT id FROM decision_inputs ORDER BY id DESC LIMIT 1 OFFSET $1")
            .bind(keep)
            .fetch_optional(&mut **tx)
            .await?;
    let rows = sqlx::query("DELETE FROM decision_inputs WHERE at < $1 OR id <= $2")
        .bind(micros(cutoff))
        .bind(boundary.unwrap_or(0))
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if rows == 0 {
        return Ok((0, 0));
    }
    let blobs = sqlx::query(
        "DELETE FROM decision_blobs WHERE digest NOT IN (\
         SELECT context FROM decision_inputs UNION SELECT stats FROM decision_inputs \
         UNION SELECT binding FROM decision_inputs \
         UNION SELECT job FROM decision_inputs WHERE job IS NOT NULL)",
    )
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok((rows, blobs))
}

pub(super) async fn size(reader: &AnyPool) -> Result<DecisionsSize> {
    let rows = sqlx::query(
        "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(LENGTH(run_id) + LENGTH(plugin) + LENGTH(world) \
         + LENGTH(mode) + LENGTH(digest) + LENGTH(pool) + LENGTH(outcome) + LENGTH(context) \
         + LENGTH(stats) + LENGTH(binding) + COALESCE(LENGTH(job), 0) + 24), 0) AS BIGINT) \
         AS bytes FROM decision_inputs",
    )
    .fetch_one(reader)
    .await?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(LENGTH(data)), 0) AS BIGINT) AS bytes \
         FROM decision_blobs",
    )
    .fetch_one(reader)
    .await?;
    Ok(DecisionsSize {
        decisions: super::rows::count(rows.try_get("n")?),
        row_bytes: super::rows::count(rows.try_get("bytes")?),
        blobs: super::rows::count(row.try_get("n")?),
        blob_bytes: super::rows::count(row.try_get("bytes")?),
    })
}
