// my-plugin (mutator): the policy, in TypeScript, so `policy.test.ts` runs
// it natively (`npm test`). `plugin.ts` connects it to Weir.
//
// Sets the environment variables of its config on every container of a
// Kubernetes job, or on a process job (replacing ones of the same name).
//
// Config: {"env": {"GREETING": "hello"}}.
import { type Job, type JsonObject, type RunView, entry } from './weir-plugin.js';

/** The config, as the schema below lets it be. */
export interface Config {
  env: { [name: string]: string };
}

export const SCHEMA: JsonObject = {
  type: 'object',
  required: ['env'],
  properties: {
    env: { type: 'object', additionalProperties: { type: 'string' } },
  },
  additionalProperties: false,
};

/** Changes `job` in place; throws a Refused (code `bad-job`) for a job it cannot change. */
export function mutate(config: Config, _run: RunView, job: Job): void {
  const env = Object.entries(config.env);
  if (job.isKubernetes) {
    for (const container of job.containers()) {
      const have = entry(container, 'env', 'list', `container \`${String(container.name ?? '')}\`: env`);
      for (const [name, value] of env) {
        const kept = have.filter((e) => !(e && typeof e === 'object' && !Array.isArray(e) && e.name === name));
        have.splice(0, have.length, ...kept, { name, value });
      }
    }
  } else {
    Object.assign(entry(job.doc, 'env', 'object', "the process job's env"), Object.fromEntries(env));
  }
}
