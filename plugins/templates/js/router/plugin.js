// my-plugin (router) as a WebAssembly component (weir:plugin@0.2.0): the
// exports Weir calls. The policy is in `policy.js`.
import { log } from 'weir:plugin/log@0.2.0';
import { RunView, configObject } from './weir-plugin.js';
import { SCHEMA, route } from './policy.js';

export const plugin = {
  describe() {
    return {
      name: 'my-plugin',
      version: '0.1.0',
      summary: 'sends tagged runs to a pool',
      configSchema: JSON.stringify(SCHEMA),
    };
  },
  // The host has checked the schema; check here what it cannot say (throw
  // a Refused to refuse the config).
  validateConfig(_config) {},
};

export const router = {
  // A Refused thrown here is the call's `err`: a refusal to decide (the
  // binding's on-error policy applies).
  route(config, run) {
    const chosen = route(configObject(config), RunView.fromResource(run));
    if (chosen === null) return { addTags: [] };
    const [pool, queue] = chosen;
    log('info', 'routed', [['pool', pool], ['queue', queue ?? '']]);
    return { pool, queue, addTags: [] };
  },
};
