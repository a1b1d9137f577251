// my-plugin (admission) as a WebAssembly component (weir:plugin@0.2.0): the
// exports Weir calls. The policy is in `policy.ts`.
import { log } from 'weir:plugin/log@0.2.0';
import { occupancy } from 'weir:plugin/stats@0.2.0';
import type { Admission, AdmissionExport, PluginExport, Run } from 'weir:plugin/types@0.2.0';
import { Refused, RunView, configObject, reject } from './weir-plugin.js';
import { type Config, SCHEMA, admit } from './policy.js';

/** Asks the host; computed only when asked. */
const running = (key: string, value: string) => occupancy({ tag: 'label', val: [key, value] }).running;

export const plugin: PluginExport = {
  describe() {
    return {
      name: 'my-plugin',
      version: '0.1.0',
      summary: 'at most N running runs per team',
      configSchema: JSON.stringify(SCHEMA),
    };
  },
  // The host has checked the schema; check here what it cannot say.
  validateConfig(_config: string) {},
};

export const admission: AdmissionExport = {
  admit(config: string, run: Run): Admission {
    let deferral;
    try {
      // The host checked the config against SCHEMA.
      deferral = admit(configObject(config) as unknown as Config, RunView.fromResource(run), running);
    } catch (e) {
      if (e instanceof Refused) return reject(e);
      throw e;
    }
    if (deferral === null) return { tag: 'admit' };
    log('info', 'deferred', [['reason', deferral.reason]]);
    return { tag: 'defer', val: deferral };
  },
};
