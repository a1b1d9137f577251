// Helpers for Weir plugins written in JavaScript (weir:plugin@0.2.0, built
// with componentize-js). Plain JavaScript over JSON, so a plugin's logic is
// tested natively (`node --test`); componentize-js follows a plugin's
// relative import of this file. Mirrors the Rust and Python SDKs:
//
// - RunView: the judged run, read once (ids, pool, queue, tags, labels,
//   parameters, job variables), with setting(key) for a value a run may give
//   as a job variable or a parameter (the job variable wins);
// - Job: the rendered job, with the Kubernetes pod spec and containers;
//   entry / resources: create-or-check nested objects;
// - Refused: throw it to refuse (the `err` of a call), or return
//   reject(refused) from an admission or mutator; its code is 1 to 64 of
//   a-z, 0-9 and '-', its details a JSON object;
// - quantity(): Kubernetes quantities (`500m`, `2Gi`) as exact
//   {numerator, denominator} BigInts; short(): a JSON value in a reason, as
//   the Rust SDK writes it.

const CODE = /^[a-z0-9-]{1,64}$/;

export class Refused {
  constructor(code, message, details) {
    if (typeof code !== 'string' || !CODE.test(code)) {
      throw new TypeError(`refusal code ${JSON.stringify(code)} is not 1 to 64 of a-z, 0-9 and '-'`);
    }
    if (details !== undefined && (details === null || typeof details !== 'object' || Array.isArray(details))) {
      throw new TypeError('refusal details must be an object');
    }
    this.code = code;
    this.message = message;
    if (details !== undefined) this.details = JSON.stringify(details);
  }

  toString() {
    return `[${this.code}] ${this.message}`;
  }
}

/** The `reject` variant of an admission or a mutation. */
export function reject(refused) {
  return { tag: 'reject', val: { code: refused.code, message: refused.message, details: refused.details } };
}

function sorted(value) {
  if (Array.isArray(value)) return value.map(sorted);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sorted(value[k])]));
  }
  return value;
}

/** A JSON value in a reason, as the Rust SDK's `short` writes it. */
export function short(value) {
  const chars = [...JSON.stringify(sorted(value))];
  return chars.length <= 60 ? chars.join('') : chars.slice(0, 57).join('') + '...';
}

/** A binding's config (JSON text) as an object; `{}` for empty text. */
export function configObject(text) {
  if (!text.trim()) return {};
  const value = JSON.parse(text);
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new Refused('bad-config', `config must be a JSON object, got ${short(value)}`);
  }
  return value;
}

const present = (v) => v !== undefined && v !== null;

export class RunView {
  constructor(fields = {}) {
    this.id = fields.id ?? '00000000-0000-0000-0000-000000000000';
    this.pool = fields.pool ?? 'default';
    this.queue = fields.queue ?? 'default';
    this.tags = fields.tags ?? [];
    this.labels = fields.labels ?? {};
    this.parameters = fields.parameters ?? {};
    this.jobVariables = fields.jobVariables ?? {};
    this.deployment = fields.deployment;
    this.parentRun = fields.parentRun;
    // 'process' or 'kubernetes'; undefined if no pool of that name exists.
    this.poolType = fields.poolType;
  }

  /** Reads the WIT `run` resource once (each getter is a host call). */
  static fromResource(run) {
    return new RunView({
      id: run.id(),
      pool: run.pool(),
      queue: run.queue(),
      tags: run.tags(),
      labels: Object.fromEntries(run.labels()),
      parameters: JSON.parse(run.parameters()),
      jobVariables: JSON.parse(run.jobVariables()),
      deployment: run.deployment(),
      parentRun: run.parentRun(),
      poolType: run.poolType(),
    });
  }

  /**
   * A run context as `weir plugin test --ctx FILE` reads it (run_id, pool,
   * queue, tags, labels, parameters, job_variables, deployment, parent_run,
   * pool_type; missing keys take their defaults): the same run a plugin sees there,
   * for native tests.
   */
  static fromJson(text) {
    const ctx = JSON.parse(text);
    if (!isObject(ctx)) throw new TypeError('a run context is a JSON object');
    const fields = {
      id: ctx.run_id, pool: ctx.pool, queue: ctx.queue, tags: ctx.tags, labels: ctx.labels,
      parameters: ctx.parameters, jobVariables: ctx.job_variables,
      deployment: ctx.deployment, parentRun: ctx.parent_run, poolType: ctx.pool_type,
    };
    return new RunView(Object.fromEntries(Object.entries(fields).filter(([, v]) => present(v))));
  }

  hasTag(tag) {
    return this.tags.includes(tag);
  }

  jobVariable(key) {
    return this.jobVariables[key];
  }

  parameter(key) {
    return this.parameters[key];
  }

  /** ['job variable', v] or ['parameter', v] for the first that sets `key`. */
  setting(key) {
    if (present(this.jobVariables[key])) return ['job variable', this.jobVariables[key]];
    if (present(this.parameters[key])) return ['parameter', this.parameters[key]];
    return null;
  }
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

export class Job {
  constructor(doc) {
    if (!isObject(doc)) throw new Refused('bad-job', 'the job is not a JSON object');
    this.doc = doc;
  }

  static fromText(text) {
    return new Job(JSON.parse(text));
  }

  toText() {
    return JSON.stringify(this.doc);
  }

  get isKubernetes() {
    return isObject(this.doc.job_manifest);
  }

  /** The pod template's spec of a Kubernetes job, or null. */
  podSpec() {
    if (!this.isKubernetes) return null;
    const pod = this.doc.job_manifest.spec?.template?.spec;
    return isObject(pod) ? pod : null;
  }

  containers() {
    const list = this.podSpec()?.containers;
    return Array.isArray(list) ? list.filter(isObject) : [];
  }
}

/**
 * parent[key], created empty when missing or null; a Refused('bad-job')
 * naming `what` when it holds something else. `kind` is 'object' or 'list'.
 */
export function entry(parent, key, kind, what) {
  if (!present(parent[key])) parent[key] = kind === 'list' ? [] : {};
  const ok = kind === 'list' ? Array.isArray(parent[key]) : isObject(parent[key]);
  if (!ok) throw new Refused('bad-job', `${what} is not ${kind === 'list' ? 'a list' : 'an object'}`);
  return parent[key];
}

/** A container's resources.<kind> ('limits' or 'requests'), created when missing. */
export function resources(container, kind) {
  const name = container.name ?? '';
  const res = entry(container, 'resources', 'object', `container \`${name}\`: resources`);
  return entry(res, kind, 'object', `container \`${name}\`: resources.${kind}`);
}

/** The same JSON value (for "already there"). */
export function sameJson(a, b) {
  return JSON.stringify(sorted(a)) === JSON.stringify(sorted(b));
}

const QUANTITY = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$/;
const POW10 = (n) => 10n ** BigInt(n);
const SUFFIX = {
  '': [1n, 1n], n: [1n, POW10(9)], u: [1n, POW10(6)], m: [1n, 1000n],
  k: [POW10(3), 1n], M: [POW10(6), 1n], G: [POW10(9), 1n], T: [POW10(12), 1n],
  P: [POW10(15), 1n], E: [POW10(18), 1n],
  Ki: [2n ** 10n, 1n], Mi: [2n ** 20n, 1n], Gi: [2n ** 30n, 1n], Ti: [2n ** 40n, 1n],
  Pi: [2n ** 50n, 1n], Ei: [2n ** 60n, 1n],
};

function gcd(a, b) {
  a = a < 0n ? -a : a;
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * A Kubernetes resource quantity, exactly: {numerator, denominator} BigInts
 * in lowest terms ('500m' → 1/2, '2Gi' → 2147483648/1). Throws a
 * RangeError naming what is wrong.
 */
export function quantity(text) {
  if (typeof text !== 'string') throw new RangeError(`a quantity is a string, got ${short(text)}`);
  const m = QUANTITY.exec(text.trim());
  if (!m) throw new RangeError(`${JSON.stringify(text)} is not a Kubernetes quantity`);
  const [, number, exponent, suffix] = m;
  const [whole, frac = ''] = number.replace(/^\+/, '').split('.');
  let num = BigInt((whole || '0') + frac);
  let den = POW10(frac.length);
  if (exponent) {
    const e = Number(exponent.slice(1));
    if (e >= 0) num *= POW10(e);
    else den *= POW10(-e);
  }
  const [sn, sd] = SUFFIX[suffix ?? ''];
  num *= sn;
  den *= sd;
  const g = gcd(num, den) || 1n;
  return { numerator: num / g, denominator: den / g };
}
