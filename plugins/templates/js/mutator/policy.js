// my-plugin (mutator): the policy, in plain JavaScript, so `policy.test.js`
// runs it natively (`npm test`). `plugin.js` connects it to Weir.
//
// Sets the environment variables of its config on every container of a
// Kubernetes job, or on a process job (replacing ones of the same name).
//
// Config: {"env": {"GREETING": "hello"}}.
import { entry } from './weir-plugin.js';

export const SCHEMA = {
  type: 'object',
  required: ['env'],
  properties: {
    env: { type: 'object', additionalProperties: { type: 'string' } },
  },
  additionalProperties: false,
};

/** Changes `job` (a Job) in place; throws a Refused to reject the run. */
export function mutate(config, _run, job) {
  const env = Object.entries(config.env);
  if (job.isKubernetes) {
    for (const container of job.containers()) {
      const have = entry(container, 'env', 'list', `container \`${container.name ?? ''}\`: env`);
      for (const [name, value] of env) {
        const kept = have.filter((e) => !(e && e.name === name));
        have.splice(0, have.length, ...kept, { name, value });
      }
    }
  } else {
    Object.assign(entry(job.doc, 'env', 'object', "the process job's env"), Object.fromEntries(env));
  }
}
