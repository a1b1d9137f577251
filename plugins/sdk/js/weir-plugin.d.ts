// Type declarations of weir-plugin.js (Weir's JavaScript plugin SDK,
// weir:plugin@0.2.0), for TypeScript authors and editors. `npm test` in
// this directory checks them against test/types-check.ts with tsc.

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** The WIT `refusal` record. */
export interface Refusal {
  code: string;
  message: string;
  details?: string;
}

/**
 * A refusal: throw it to refuse to decide (the call's `err`), or return
 * `reject(refused)` from an admission or a mutator. `code` is 1 to 64 of
 * a-z, 0-9 and '-'; `details` a JSON object (kept as JSON text).
 */
export class Refused implements Refusal {
  constructor(code: string, message: string, details?: JsonObject);
  code: string;
  message: string;
  details?: string;
  toString(): string;
}

/** The `reject` variant of an admission or a mutation. */
export function reject(refused: Refused): { tag: 'reject'; val: Refusal };

/** A JSON value in a reason, as the Rust SDK's `short` writes it. */
export function short(value: Json | undefined): string;

/** A binding's config (JSON text) as an object; `{}` for empty text. */
export function configObject(text: string): JsonObject;

/** The WIT `run` resource, as componentize-js passes it. */
export interface RunResource {
  id(): string;
  deployment(): string | undefined;
  pool(): string;
  poolType(): 'process' | 'kubernetes' | undefined;
  queue(): string;
  tags(): string[];
  labels(): [string, string][];
  label(key: string): string | undefined;
  parameters(): string;
  jobVariables(): string;
  parentRun(): string | undefined;
}

export interface RunFields {
  id?: string;
  pool?: string;
  queue?: string;
  tags?: string[];
  labels?: { [key: string]: string };
  parameters?: JsonObject;
  jobVariables?: JsonObject;
  deployment?: string;
  parentRun?: string;
  poolType?: 'process' | 'kubernetes';
}

/** The judged run, read once. */
export class RunView {
  constructor(fields?: RunFields);
  id: string;
  pool: string;
  queue: string;
  tags: string[];
  labels: { [key: string]: string };
  parameters: JsonObject;
  jobVariables: JsonObject;
  deployment?: string;
  parentRun?: string;
  /** The pool's type; undefined if no pool of that name exists (a router can see that). */
  poolType?: 'process' | 'kubernetes';
  /** Reads the WIT `run` resource once (each getter is a host call). */
  static fromResource(run: RunResource): RunView;
  /** A run context file as `weir plugin test --ctx FILE` reads it. */
  static fromJson(text: string): RunView;
  hasTag(tag: string): boolean;
  jobVariable(key: string): Json | undefined;
  parameter(key: string): Json | undefined;
  /** ['job variable', v] or ['parameter', v] for the first that sets `key`. */
  setting(key: string): ['job variable' | 'parameter', Json] | null;
}

/** The rendered job: a Kubernetes job configuration or a process spec. */
export class Job {
  constructor(doc: JsonObject);
  doc: JsonObject;
  static fromText(text: string): Job;
  toText(): string;
  readonly isKubernetes: boolean;
  /** The pod template's spec of a Kubernetes job, or null. */
  podSpec(): JsonObject | null;
  containers(): JsonObject[];
}

/** parent[key], created empty when missing or null; a Refused('bad-job') naming `what` when it holds something else. */
export function entry(parent: JsonObject, key: string, kind: 'object', what: string): JsonObject;
export function entry(parent: JsonObject, key: string, kind: 'list', what: string): Json[];

/** A container's resources.<kind>, created when missing. */
export function resources(container: JsonObject, kind: 'limits' | 'requests'): { [name: string]: Json };

/** The same JSON value (for "already there"). */
export function sameJson(a: Json | undefined, b: Json | undefined): boolean;

/** A Kubernetes quantity, exactly, in lowest terms. */
export function quantity(text: string): { numerator: bigint; denominator: bigint };
