// my-plugin (mutator) as a WebAssembly component (weir:plugin@0.2.0): the
// exports Weir calls. The policy is in `policy.ts`.
import { log } from 'weir:plugin/log@0.2.0';
import type { Mutation, MutatorExport, PluginExport, Run } from 'weir:plugin/types@0.2.0';
import { Job, Refused, RunView, configObject, reject } from './weir-plugin.js';
import { type Config, SCHEMA, mutate } from './policy.js';

export const plugin: PluginExport = {
  describe() {
    return {
      name: 'my-plugin',
      version: '0.1.0',
      summary: "sets environment variables on a run's job",
      configSchema: JSON.stringify(SCHEMA),
    };
  },
  // The host has checked the schema; check here what it cannot say.
  validateConfig(_config: string) {},
};

export const mutator: MutatorExport = {
  mutate(config: string, run: Run, jobText: string): Mutation {
    // The host checked the config against SCHEMA.
    const cfg = configObject(config) as unknown as Config;
    const job = Job.fromText(jobText);
    try {
      mutate(cfg, RunView.fromResource(run), job);
    } catch (e) {
      if (e instanceof Refused) return reject(e);
      throw e;
    }
    log('info', 'set environment', [['variables', String(Object.keys(cfg.env).length)]]);
    // The whole job: the host computes the patch, checks and records it.
    return { tag: 'job', val: job.toText() };
  },
};
