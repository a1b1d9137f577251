// The policy, natively: `npm test` (tsc, then node --test).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Job, Refused, RunView } from './weir-plugin.js';
import { type Config, mutate } from './policy.js';

const read = (file: string) => readFileSync(new URL(file, import.meta.url), 'utf8');
const CONFIG = JSON.parse(read('./config.json')) as Config;
// `run.json` and `job.json`: what `weir plugin test --ctx run.json --job
// job.json` gives the plugin.
const RUN = RunView.fromJson(read('./run.json'));
const JOB = read('./job.json');

test('every container gets the variables', () => {
  const job = Job.fromText(JOB);
  mutate(CONFIG, RUN, job);
  for (const container of job.containers()) {
    assert.ok(Array.isArray(container.env));
    assert.ok(container.env.some((e) => JSON.stringify(e) === JSON.stringify({ name: 'GREETING', value: 'hello' })));
  }
});

test('a process job gets them too', () => {
  const job = new Job({ command: ['echo', 'hi'], env: { GREETING: 'bye', KEEP: '1' } });
  mutate(CONFIG, RUN, job);
  assert.deepEqual(job.doc.env, { GREETING: 'hello', KEEP: '1' });
});

test('a broken env is refused', () => {
  const job = new Job({ command: ['true'], env: ['not', 'an', 'object'] });
  assert.throws(() => mutate(CONFIG, RUN, job), (e) => e instanceof Refused && e.code === 'bad-job');
});
