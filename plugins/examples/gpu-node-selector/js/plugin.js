// `gpu-node-selector` in JavaScript (weir:plugin@0.2.0): the same policy as
// the Rust example (`../src/lib.rs`), making the same job changes. It returns
// the whole changed job; the host computes the patch, checks it and records
// it. See the Python version (`../python/app.py`) for the rules in prose.
import { log } from 'weir:plugin/log@0.2.0';
import {
  Job,
  Refused,
  RunView,
  configObject,
  entry,
  resources,
  sameJson,
  short,
} from '../../../sdk/js/weir-plugin.js';

const SCHEMA = {
  type: 'object',
  properties: {
    tag: { type: 'string', minLength: 1 },
    node_selector: { type: 'object', additionalProperties: { type: 'string' } },
    tolerations: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          key: { type: 'string' },
          operator: { enum: ['Exists', 'Equal'] },
          value: { type: 'string' },
          effect: { enum: ['', 'NoSchedule', 'PreferNoSchedule', 'NoExecute'] },
          tolerationSeconds: { type: 'integer' },
        },
        additionalProperties: false,
      },
    },
    resource: { type: 'string', minLength: 1 },
  },
  additionalProperties: false,
};

const bad = (message) => new Refused('bad-gpu-request', message);

/** How many GPUs the run wants (0: none). */
export function wantedGpus(tag, run) {
  let found = run.setting('gpus');
  if (found) {
    const [source, v] = found;
    let n = null;
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) n = v;
    else if (typeof v === 'string' && /^\d+$/.test(v.trim())) n = Number(v.trim());
    if (n === null || n > 0xffffffff) {
      throw bad(`${source} \`gpus\` must be a non-negative integer, got ${short(v)}`);
    }
    if (n > 0) return n;
  }
  let flagged = false;
  found = run.setting('gpu');
  if (found) {
    const [source, v] = found;
    if (typeof v === 'boolean') flagged = v;
    else if (v === 'true' || v === 'false') flagged = v === 'true';
    else throw bad(`${source} \`gpu\` must be true or false, got ${short(v)}`);
  }
  return flagged || run.hasTag(tag) ? 1 : 0;
}

/** Changes `job` in place for a run that wants GPUs; false if it does not. */
export function place(config, run, job) {
  if (!job.isKubernetes) return false;
  const gpus = wantedGpus(config.tag ?? 'gpu', run);
  if (gpus === 0) return false;
  const spec = job.podSpec();
  if (!spec) {
    log('warn', 'kubernetes job has no pod spec; nothing to do', []);
    return false;
  }
  const nodeSelector = config.node_selector ?? {};
  if (Object.keys(nodeSelector).length > 0) {
    Object.assign(entry(spec, 'nodeSelector', 'object', "the pod spec's nodeSelector"), nodeSelector);
  }
  const tolerations = config.tolerations ?? [];
  if (tolerations.length > 0) {
    const have = entry(spec, 'tolerations', 'list', "the pod spec's tolerations");
    for (const t of tolerations) if (!have.some((h) => sameJson(h, t))) have.push(t);
  }
  const resource = config.resource ?? 'nvidia.com/gpu';
  const amount = String(gpus);
  for (const container of job.containers()) {
    resources(container, 'limits')[resource] = amount;
    const requests = container.resources?.requests;
    if (requests && typeof requests === 'object' && resource in requests) requests[resource] = amount;
  }
  log('info', 'placed GPU run', [['gpus', amount], ['resource', resource]]);
  return true;
}

export const plugin = {
  describe() {
    return {
      name: 'gpu-node-selector',
      version: '1.0.0',
      summary: 'puts GPU runs on GPU nodes',
      configSchema: JSON.stringify(SCHEMA),
    };
  },
  validateConfig(_config) {},
};

export const mutator = {
  mutate(config, run, jobText) {
    const job = Job.fromText(jobText);
    // A Refused thrown here is the call's `err`: a refusal to decide.
    if (!place(configObject(config), RunView.fromResource(run), job)) {
      return { tag: 'job', val: jobText };
    }
    return { tag: 'job', val: job.toText() };
  },
};
