// my-plugin (router): the policy, in plain JavaScript, so `policy.test.js`
// runs it natively (`npm test`). `plugin.js` connects it to Weir.
//
// Runs that carry the tag `tag` go to the pool `pool` (and the queue
// `queue`, if set); others keep the pool and queue they have.
//
// Config: {"tag": "gpu", "pool": "gpu", "queue": "default"} (`queue` optional).

// The JSON Schema of the config: the host checks a binding's config against
// it (naming the key that is wrong) before the plugin sees it.
export const SCHEMA = {
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
export function route(config, run) {
  if (!run.hasTag(config.tag)) return null;
  return [config.pool, config.queue];
}
