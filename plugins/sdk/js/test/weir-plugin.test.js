// The SDK's helpers, natively: `node --test plugins/sdk/js/test/`.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Job, Refused, RunView, configObject, quantity, reject, resources, short } from '../weir-plugin.js';

test('a refusal checks its code and details', () => {
  const r = new Refused('quota-exceeded', 'team a is full', { team: 'a' });
  assert.equal(String(r), '[quota-exceeded] team a is full');
  assert.deepEqual(reject(r), {
    tag: 'reject',
    val: { code: 'quota-exceeded', message: 'team a is full', details: '{"team":"a"}' },
  });
  for (const bad of ['', 'Upper', 'sp ace', 'x'.repeat(65), 'under_score']) {
    assert.throws(() => new Refused(bad, 'm'), /refusal code/);
  }
  assert.throws(() => new Refused('c', 'm', ['list']), /details/);
});

test('short writes JSON as the Rust SDK does', () => {
  assert.equal(short(['a', 1]), '["a",1]');
  assert.equal(short({ b: 1, a: [true, null] }), '{"a":[true,null],"b":1}');
  const long = short('x'.repeat(100));
  assert.equal([...long].length, 60);
  assert.ok(long.endsWith('...'));
});

test('config objects', () => {
  assert.deepEqual(configObject(''), {});
  assert.deepEqual(configObject('{"max": 3}'), { max: 3 });
  assert.throws(() => configObject('[1]'), (e) => e.code === 'bad-config' && e.message.includes('[1]'));
});

test('a setting comes from the job variable first', () => {
  const run = new RunView({ parameters: { gpus: 2, gpu: null }, jobVariables: { gpus: '3' }, tags: ['gpu'] });
  assert.deepEqual(run.setting('gpus'), ['job variable', '3']);
  assert.equal(run.setting('gpu'), null);
  assert.deepEqual(new RunView({ parameters: { gpu: true } }).setting('gpu'), ['parameter', true]);
  assert.ok(run.hasTag('gpu') && !run.hasTag('cpu'));
});

test('job helpers reach the pod spec and create resources', () => {
  const job = Job.fromText(
    '{"job_manifest": {"spec": {"template": {"spec": {"containers": [' +
      '{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "1"}}}]}}}}}',
  );
  assert.ok(job.isKubernetes);
  assert.deepEqual(job.containers().map((c) => c.name), ['a', 'b']);
  for (const c of job.containers()) resources(c, 'limits')['nvidia.com/gpu'] = '1';
  const spec = job.podSpec();
  assert.deepEqual(spec.containers[0].resources, { limits: { 'nvidia.com/gpu': '1' } });
  assert.deepEqual(spec.containers[1].resources.requests, { cpu: '1' });
  const proc = new Job({ command: ['true'], env: {} });
  assert.ok(!proc.isKubernetes);
  assert.equal(proc.podSpec(), null);
  assert.deepEqual(proc.containers(), []);
  const broken = new Job({ job_manifest: { spec: { template: { spec: { containers: [{ name: 'c', resources: [] }] } } } } });
  assert.throws(() => resources(broken.containers()[0], 'limits'), (e) => e.message === 'container `c`: resources is not an object');
  assert.throws(() => new Job([1]), (e) => e.code === 'bad-job');
});

test('quantities are exact', () => {
  const q = (t) => {
    const { numerator, denominator } = quantity(t);
    return `${numerator}/${denominator}`;
  };
  assert.equal(q('500m'), '1/2');
  assert.equal(q('2Gi'), `${2n * 2n ** 30n}/1`);
  assert.equal(q('1.5'), '3/2');
  assert.equal(q('1e3'), '1000/1');
  assert.equal(q('128Mi'), `${128n * 2n ** 20n}/1`);
  assert.equal(q('4k'), '4000/1');
  assert.equal(q(' 2 '), '2/1');
  for (const bad of ['', '1.2.3', '5 Gi', 'Gi', '1x']) {
    assert.throws(() => quantity(bad), /not a Kubernetes quantity/);
  }
  assert.throws(() => quantity(3), /is a string/);
});

test('a run context file reads as the plugin sees it', () => {
  const run = RunView.fromJson(
    '{"run_id": "r1", "pool": "p", "queue": "q", "tags": ["gpu"], "labels": {"team": "a"},'
    + ' "parameters": {"n": 1}, "job_variables": {"image": "x"}, "deployment": null}',
  );
  assert.deepEqual([run.id, run.pool, run.queue, run.tags], ['r1', 'p', 'q', ['gpu']]);
  assert.deepEqual(run.labels, { team: 'a' });
  assert.equal(run.parameter('n'), 1);
  assert.equal(run.jobVariable('image'), 'x');
  assert.equal(run.deployment, undefined);
  assert.deepEqual(RunView.fromJson('{}'), new RunView());
  assert.throws(() => RunView.fromJson('[]'), /JSON object/);
});

test('fromResource reads every getter once, the pool type among them', () => {
  const calls = [];
  const getter = (name, value) => () => {
    calls.push(name);
    return value;
  };
  const run = {
    id: getter('id', 'r1'),
    pool: getter('pool', 'gpu'),
    poolType: getter('poolType', 'kubernetes'),
    queue: getter('queue', 'default'),
    tags: getter('tags', ['gpu']),
    labels: getter('labels', [['team', 'a']]),
    label: getter('label', undefined),
    parameters: getter('parameters', '{"n": 1}'),
    jobVariables: getter('jobVariables', '{}'),
    deployment: getter('deployment', undefined),
    parentRun: getter('parentRun', undefined),
  };
  const view = RunView.fromResource(run);
  assert.equal(view.poolType, 'kubernetes');
  assert.deepEqual(view.labels, { team: 'a' });
  assert.deepEqual(view.parameters, { n: 1 });
  assert.equal(view.id, 'r1');
  assert.equal(new Set(calls).size, calls.length, `a getter called twice: ${calls}`);
  assert.equal(RunView.fromJson('{"pool_type": "process"}').poolType, 'process');
  assert.equal(new RunView().poolType, undefined);
});
