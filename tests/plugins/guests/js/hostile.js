// `hostile` in JavaScript: an admission plugin (weir:plugin@0.1.0) whose
// config says how to misbehave, so the sandbox's tests can show a JavaScript
// guest is held to the same bounds as a Rust one.
//
// Config: {"do": "admit" | "reject" | "loop" | "allocate" | "raise" | "error" | "remember"}
// (see ../python/hostile/app.py: the same behaviours).

const BEHAVIOURS = ['admit', 'reject', 'loop', 'allocate', 'raise', 'error', 'remember'];

// The runs this instance has judged: empty in the build's snapshot, so empty
// in every fresh instance.
const seen = [];

function behaviour(text) {
  const cfg = text.trim() ? JSON.parse(text) : {};
  const todo = cfg && typeof cfg === 'object' && !Array.isArray(cfg) ? (cfg.do ?? 'admit') : undefined;
  if (!BEHAVIOURS.includes(todo)) {
    throw { message: `config key \`do\`: must be one of ${BEHAVIOURS.join(', ')}` };
  }
  return todo;
}

export const config = {
  validateConfig(text) {
    behaviour(text);
  },
};

export const admission = {
  admit(text, ctx, _stats) {
    const todo = behaviour(text);
    if (todo === 'reject') return { tag: 'reject', val: `javascript refuses run ${ctx.runId}` };
    if (todo === 'loop') {
      for (;;) {}
    }
    if (todo === 'allocate') {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
    }
    if (todo === 'raise') throw new TypeError('an uncaught JavaScript exception');
    if (todo === 'error') throw { message: 'javascript says no' };
    if (todo === 'remember') {
      seen.push(ctx.runId);
      if (seen.length > 1) return { tag: 'reject', val: `state leaked: this instance has judged ${seen.length} runs` };
    }
    return { tag: 'admit' };
  },
};
