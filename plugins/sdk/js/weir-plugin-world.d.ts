// TypeScript declarations of Weir's plugin contract weir:plugin@0.2.0
// (wit/v0.2.0/plugin.wit) as componentize-js presents it to a plugin: the
// host's imports (`log`, `stats`) as modules, and the types of what a
// plugin exports. Records have camelCase fields, variants are `{tag, val}`,
// enums are their kebab-case names, `option<T>` is `T | undefined`.
//
// Written by hand: `jco guest-types` (jco 1.35.0, the version componentize-js
// 0.23.0 brings) cannot read a WIT path on Node.js 20 ("failed to read path
// for WIT ... os error 44"). CI compiles test/types-check.ts against it, and
// the TypeScript templates build real components with it, so a declaration
// that disagrees with the contract fails there.

declare module 'weir:plugin/log@0.2.0' {
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** Structured logging into the host's tracing, tagged with the plugin and the run. */
  export function log(level: Level, message: string, fields: Array<[string, string]>): void;
}

declare module 'weir:plugin/stats@0.2.0' {
  import type { Counts, Scope } from 'weir:plugin/types@0.2.0';
  /** Load, read from the store when asked (at most 64 questions a decision). */
  export function occupancy(scope: Scope): Counts;
}

/** Types only (`import type`): nothing is imported at run time. */
declare module 'weir:plugin/types@0.2.0' {
  export type PoolType = 'process' | 'kubernetes';

  export interface Refusal {
    /** 1 to 64 of a-z, 0-9 and '-'. */
    code: string;
    message: string;
    /** JSON text of an object. */
    details?: string;
  }

  /** The run being judged, valid during the call it is passed to. */
  export interface Run {
    id(): string;
    deployment(): string | undefined;
    pool(): string;
    poolType(): PoolType | undefined;
    queue(): string;
    tags(): string[];
    labels(): Array<[string, string]>;
    label(key: string): string | undefined;
    /** JSON text of an object. */
    parameters(): string;
    /** JSON text of an object. */
    jobVariables(): string;
    parentRun(): string | undefined;
  }

  export interface Counts {
    running: number;
    queued: number;
  }

  export type Scope =
    | { tag: 'pool' }
    | { tag: 'queue' }
    | { tag: 'tag'; val: string }
    | { tag: 'label'; val: [string, string] };

  export interface Route {
    pool?: string;
    queue?: string;
    addTags: string[];
  }

  export interface Deferral {
    seconds: number;
    reason: string;
  }

  export type Admission =
    | { tag: 'admit' }
    | { tag: 'reject'; val: Refusal }
    | { tag: 'defer'; val: Deferral };

  export type PatchKind = 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';

  export interface PatchOp {
    op: PatchKind;
    path: string;
    from?: string;
    /** JSON text. */
    value?: string;
  }

  export type Mutation =
    | { tag: 'job'; val: string }
    | { tag: 'patch'; val: PatchOp[] }
    | { tag: 'reject'; val: Refusal };

  export interface Description {
    name: string;
    version: string;
    summary: string;
    /** JSON text of a JSON Schema. */
    configSchema?: string;
  }

  /** Every world exports `plugin`. Throw a `Refused` to refuse the config. */
  export interface PluginExport {
    describe(): Description;
    validateConfig(config: string): void;
  }

  /** Throwing a `Refused` from any of these is a refusal to decide. */
  export interface RouterExport {
    route(config: string, run: Run): Route;
  }

  export interface AdmissionExport {
    admit(config: string, run: Run): Admission;
  }

  export interface MutatorExport {
    mutate(config: string, run: Run, job: string): Mutation;
  }
}
