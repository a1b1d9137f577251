// The policy, natively: `npm test` (tsc, then node --test).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { RunView } from './weir-plugin.js';
import { type Config, route } from './policy.js';

const read = (file: string) => readFileSync(new URL(file, import.meta.url), 'utf8');
const CONFIG = JSON.parse(read('./config.json')) as Config;
// `run.json`: the run `weir plugin test --ctx run.json` gives the plugin.
const RUN = RunView.fromJson(read('./run.json'));

test('a tagged run goes to the pool', () => {
  assert.deepEqual(route(CONFIG, RUN), ['gpu', undefined]);
  assert.deepEqual(route({ ...CONFIG, queue: 'fast' }, RUN), ['gpu', 'fast']);
});

test('an untagged run stays where it is', () => {
  assert.equal(route(CONFIG, new RunView({ tags: ['cpu'] })), null);
});
