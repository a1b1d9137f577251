// my-plugin (router): the policy, in TypeScript, so `policy.test.ts` runs it
// natively (`npm test`). `plugin.ts` connects it to Weir.
//
// Runs that carry the tag `tag` go to the pool `pool` (and the queue
// `queue`, if set); others keep the pool and queue they have.
//
// Config: {"tag": "gpu", "pool": "gpu", "queue": "default"} (`queue` optional).
import type { JsonObject, RunView } from './weir-plugin.js';

/** The config, as the schema below lets it be. */
export interface Config {
  tag: string;
  pool: string;
  queue?: string;
}

// The JSON Schema of the config: the host checks a binding's config against
// it (naming the key that is wrong) before the plugin sees it.
export const SCHEMA: JsonObject = {
  type: 'object',
  required: ['tag', 'pool'],
  properties: {
    tag: { type: 'string', minLength: 1 },
    pool: { type: 'string', minLength: 1 },
    queue: { type: 'string', minLength: 1 },
  },
  additionalProperties: false,
};

/** [pool, queue or undefined] for a run to send elsewhere; null to leave it. */
export function route(config: Config, run: RunView): [string, string | undefined] | null {
  if (!run.hasTag(config.tag)) return null;
  return [config.pool, config.queue];
}
