// `approved-registries` in JavaScript (weir:plugin@0.2.0): the same policy as
// the Rust example (`../src/lib.rs`), the same decisions and the same reasons.
// Admits a run whose `image` job variable starts with an approved prefix, or
// that has none; rejects any other with the code `unapproved-registry`.
//
// Config: {"prefixes": ["registry.example.com/", "ghcr.io/acme/"]}; its JSON
// Schema (below) is checked by the host before `validateConfig` is called.
import { log } from 'weir:plugin/log@0.2.0';
import { Refused, RunView, configObject, reject, short } from '../../../sdk/js/weir-plugin.js';

const SCHEMA = {
  type: 'object',
  required: ['prefixes'],
  properties: {
    prefixes: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
  },
  additionalProperties: false,
};

/** Returns if the run is admitted; throws a Refused if it is not. */
export function judge(config, run) {
  const { prefixes } = config;
  const image = run.jobVariable('image');
  if (image === undefined || image === null) return;
  if (typeof image !== 'string') {
    throw new Refused('bad-image', `job variable \`image\` must be a string, got ${short(image)}`);
  }
  if (prefixes.some((p) => image.startsWith(p))) return;
  log('info', 'image from an unapproved registry', [['image', image]]);
  throw new Refused(
    'unapproved-registry',
    `image ${JSON.stringify(image)} is not from an approved registry; allowed prefixes: ${prefixes.join(', ')}`,
    { image, prefixes },
  );
}

export const plugin = {
  describe() {
    return {
      name: 'approved-registries',
      version: '1.0.0',
      summary: 'admits only runs whose image comes from an approved registry',
      configSchema: JSON.stringify(SCHEMA),
    };
  },
  validateConfig(_config) {},
};

export const admission = {
  admit(config, run) {
    try {
      judge(configObject(config), RunView.fromResource(run));
    } catch (e) {
      if (e instanceof Refused) return reject(e);
      throw e;
    }
    return { tag: 'admit' };
  },
};
