// Not run: compiled by `tsc --noEmit` (see package.json's `types` script) to
// check weir-plugin.d.ts is a usable description of the SDK.
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
