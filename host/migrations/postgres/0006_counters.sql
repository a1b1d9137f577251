-- Counters kept in the transactions that change what they count (issue #13),
-- so /metrics, `weir pool ls` and admission stats read a row per pool, queue,
-- tag or label instead of scanning runs.

-- Runs by state: one row per state, always present.
CREATE TABLE run_counts (
    state text PRIMARY KEY,
    n     bigint NOT NULL
);
INSERT INTO run_counts (state, n)
SELECT s.state, (SELECT COUNT(*) FROM runs WHERE runs.state = s.state)
FROM (SELECT 'Scheduled' AS state UNION ALL SELECT 'Late' UNION ALL SELECT 'AwaitingRetry'
      UNION ALL SELECT 'Pending' UNION ALL SELECT 'Running' UNION ALL SELECT 'Cancelling'
      UNION ALL SELECT 'Completed' UNION ALL SELECT 'Failed' UNION ALL SELECT 'Crashed'
      UNION ALL SELECT 'Cancelled') AS s;

-- Runs holding slots (active) and waiting (queued), by what they belong to:
-- ('pool', pool, ''), ('queue', pool, queue), ('tag', tag, ''),
-- ('label', key, value).
CREATE TABLE occupancy (
    kind   text NOT NULL,
    key    text NOT NULL,
    value  text NOT NULL,
    active bigint NOT NULL,
    queued bigint NOT NULL,
    PRIMARY KEY (kind, key, value)
);
INSERT INTO occupancy (kind, key, value, active, queued)
SELECT 'pool', pool, '',
       SUM(CASE WHEN state IN ('Pending','Running','Cancelling') THEN 1 ELSE 0 END),
       SUM(CASE WHEN state IN ('Scheduled','Late','AwaitingRetry') THEN 1 ELSE 0 END)
FROM runs WHERE state IN ('Pending','Running','Cancelling','Scheduled','Late','AwaitingRetry')
GROUP BY pool;
INSERT INTO occupancy (kind, key, value, active, queued)
SELECT 'queue', pool, queue,
       SUM(CASE WHEN state IN ('Pending','Running','Cancelling') THEN 1 ELSE 0 END),
       SUM(CASE WHEN state IN ('Scheduled','Late','AwaitingRetry') THEN 1 ELSE 0 END)
FROM runs WHERE state IN ('Pending','Running','Cancelling','Scheduled','Late','AwaitingRetry')
GROUP BY pool, queue;
INSERT INTO occupancy (kind, key, value, active, queued)
SELECT 'tag', t.tag, '',
       SUM(CASE WHEN r.state IN ('Pending','Running','Cancelling') THEN 1 ELSE 0 END),
       SUM(CASE WHEN r.state IN ('Scheduled','Late','AwaitingRetry') THEN 1 ELSE 0 END)
FROM run_tags t JOIN runs r ON r.id = t.run_id
WHERE r.state IN ('Pending','Running','Cancelling','Scheduled','Late','AwaitingRetry')
GROUP BY t.tag;
INSERT INTO occupancy (kind, key, value, active, queued)
SELECT 'label', l.key, l.value #>> '{}',
       SUM(CASE WHEN r.state IN ('Pending','Running','Cancelling') THEN 1 ELSE 0 END),
       SUM(CASE WHEN r.state IN ('Scheduled','Late','AwaitingRetry') THEN 1 ELSE 0 END)
FROM runs r, jsonb_each(r.labels::jsonb) l
WHERE r.state IN ('Pending','Running','Cancelling','Scheduled','Late','AwaitingRetry')
  AND jsonb_typeof(l.value) = 'string'
GROUP BY l.key, l.value #>> '{}';
