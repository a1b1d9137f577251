// The policy, natively: `npm test` (tsc, then node --test).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Refused, RunView } from './weir-plugin.js';
import { type Config, admit } from './policy.js';

const read = (file: string) => readFileSync(new URL(file, import.meta.url), 'utf8');
const CONFIG = JSON.parse(read('./config.json')) as Config;
// `run.json` and `stats.json`: what `weir plugin test --ctx run.json
// --stats stats.json` gives the plugin.
const RUN = RunView.fromJson(read('./run.json'));
const STATS = JSON.parse(read('./stats.json')) as {
  labels: { [key: string]: { [value: string]: { running?: number } } };
};
const running = (key: string, value: string) => STATS.labels[key]?.[value]?.running ?? 0;

test('a team at its limit waits', () => {
  assert.deepEqual(admit(CONFIG, RUN, running), { seconds: 30, reason: 'team a has 2 runs running (at most 2)' });
});

test('a team under its limit is admitted', () => {
  assert.equal(admit({ ...CONFIG, max_running_per_team: 3 }, RUN, running), null);
});

test('a run without a team is rejected', () => {
  assert.throws(
    () => admit(CONFIG, new RunView({ labels: {} }), running),
    (e) => e instanceof Refused && e.code === 'missing-team',
  );
});
