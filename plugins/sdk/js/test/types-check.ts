// Not run: compiled by `tsc --noEmit` (see package.json's `types` script) to
// check weir-plugin.d.ts (the SDK) and weir-plugin-world.d.ts (the contract)
// are usable descriptions.
import { log } from 'weir:plugin/log@0.2.0';
import { occupancy } from 'weir:plugin/stats@0.2.0';
import type { Admission, AdmissionExport, Mutation, Run } from 'weir:plugin/types@0.2.0';
import { Job, Refused, RunView, configObject, entry, quantity, reject, resources, sameJson, short } from '../weir-plugin.js';

const run: RunView = RunView.fromJson('{"run_id": "r", "labels": {"team": "a"}}');
const team: string | undefined = run.labels.team;
const found = run.setting('gpus');
if (found !== null) {
  const [source, value] = found;
  console.log(source, short(value));
}
const job = Job.fromText('{"job_manifest": {}}');
for (const container of job.containers()) {
  resources(container, 'limits')['nvidia.com/gpu'] = '1';
  const env = entry(container, 'env', 'list', 'env');
  env.push({ name: 'A', value: 'b' });
}
const spec = job.podSpec();
if (spec && !sameJson(spec.nodeSelector, {})) entry(spec, 'nodeSelector', 'object', 'nodeSelector');
const q = quantity('500m');
const half: boolean = q.numerator * 2n === q.denominator;
const refusal = reject(new Refused('over-quota', `team ${team} is full`, { half }));
const tag: 'reject' = refusal.tag;
const config = configObject('{}');
console.log(tag, config, job.toText());

// The contract's declarations (weir-plugin-world.d.ts), as a plugin uses them.
const admission: AdmissionExport = {
  admit(config: string, run: Run): Admission {
    const view = RunView.fromResource(run);
    const kind: 'process' | 'kubernetes' | undefined = run.poolType();
    const busy = occupancy({ tag: 'label', val: ['team', view.labels.team ?? ''] }).running > 2;
    log('info', 'judged', [['config', config], ['pool type', kind ?? 'none']]);
    if (busy) return { tag: 'defer', val: { seconds: 5, reason: 'busy' } };
    return reject(new Refused('no', 'never'));
  },
};
const mutation: Mutation = { tag: 'patch', val: [{ op: 'add', path: '/env/A', value: '"1"' }] };
console.log(admission, mutation);
