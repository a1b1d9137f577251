// my-plugin (router) as a WebAssembly component (weir:plugin@0.2.0): the
// exports Weir calls. The policy is in `policy.ts`.
import { log } from 'weir:plugin/log@0.2.0';
import type { PluginExport, Route, RouterExport, Run } from 'weir:plugin/types@0.2.0';
import { RunView, configObject } from './weir-plugin.js';
import { type Config, SCHEMA, route } from './policy.js';

export const plugin: PluginExport = {
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
  validateConfig(_config: string) {},
};

export const router: RouterExport = {
  // A Refused thrown here is the call's `err`: a refusal to decide (the
  // binding's on-error policy applies).
  route(config: string, run: Run): Route {
    // The host checked the config against SCHEMA.
    const chosen = route(configObject(config) as unknown as Config, RunView.fromResource(run));
    if (chosen === null) return { addTags: [] };
    const [pool, queue] = chosen;
    log('info', 'routed', [['pool', pool], ['queue', queue ?? '']]);
    return { pool, queue, addTags: [] };
  },
};
