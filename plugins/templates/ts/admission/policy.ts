// my-plugin (admission): the policy, in TypeScript, so `policy.test.ts` runs
// it natively (`npm test`). `plugin.ts` connects it to Weir.
//
// A team may have at most `max_running_per_team` runs holding slots at
// once: a run of a team at its limit is deferred (judged again after
// `retry_seconds`); a run without a `team` label is rejected.
//
// Config: {"max_running_per_team": 2, "retry_seconds": 30}.
import { type JsonObject, Refused, type RunView } from './weir-plugin.js';

/** The config, as the schema below lets it be. */
export interface Config {
  max_running_per_team: number;
  retry_seconds?: number;
}

export const SCHEMA: JsonObject = {
  type: 'object',
  required: ['max_running_per_team'],
  properties: {
    max_running_per_team: { type: 'integer', minimum: 1 },
    retry_seconds: { type: 'integer', minimum: 1, maximum: 86400 },
  },
  additionalProperties: false,
};

/** How many runs with label `key` = `value` hold slots. */
export type Running = (key: string, value: string) => number;

/** null to admit; {seconds, reason} to defer; throws a Refused to reject. */
export function admit(config: Config, run: RunView, running: Running): { seconds: number; reason: string } | null {
  const team = run.labels.team;
  if (team === undefined) {
    throw new Refused('missing-team', 'the run has no `team` label', { labels: run.labels });
  }
  const limit = config.max_running_per_team;
  const now = running('team', team);
  if (now >= limit) {
    return { seconds: config.retry_seconds ?? 30, reason: `team ${team} has ${now} runs running (at most ${limit})` };
  }
  return null;
}
