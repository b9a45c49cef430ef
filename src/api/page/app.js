// simserve try-it page: builds a request from the form, sends it to this origin like any
// client, and draws the answer. No dependencies; the page's Content-Security-Policy allows
// this file, the style sheet and requests to this origin, nothing else.
'use strict';

const $ = (id) => document.getElementById(id);

/** An element with properties and children. */
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

/** Replaces the `data-` attributes of `node` (but its test id) with `values`. */
function setData(node, values) {
  for (const key of Object.keys(node.dataset)) if (key !== 'testid') delete node.dataset[key];
  Object.assign(node.dataset, values);
}

// ---- Colour scales, both colour-blind safe: ColorBrewer RdBu (diverging, blue for -1 to
// red for 1) and viridis (sequential). Linear between the stops, in sRGB.
const STOPS = {
  diverging: ['053061', '2166ac', '4393c3', '92c5de', 'd1e5f0', 'f7f7f7', 'fddbc7', 'f4a582',
    'd6604d', 'b2182b', '67001f'],
  sequential: ['440154', '482878', '3e4989', '31688e', '26828e', '1f9e89', '35b779', '6ece58',
    'b5de2b', 'fde725'],
};
for (const kind in STOPS) {
  STOPS[kind] = STOPS[kind].map((hex) => [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16)));
}

/** The colour at `t` in [0, 1] of the stops `kind`. */
function colour(kind, t) {
  const stops = STOPS[kind];
  const p = clamp(Number.isFinite(t) ? t : 0.5, 0, 1) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(p));
  const f = p - i;
  return stops[i].map((c, k) => Math.round(c + (stops[i + 1][k] - c) * f));
}

/**
 * The scale that fits a metric: cosine on [-1, 1] and dot on [-max|v|, max|v|] diverge
 * around 0; distances run from 0 to their largest value.
 */
function scaleFor(metric, values) {
  if (metric === 'cosine') return { kind: 'diverging', lo: -1, hi: 1 };
  let max = 0;
  for (const v of values) max = Math.max(max, metric === 'dot' ? Math.abs(v) : v);
  if (!(max > 0)) max = 1;
  return metric === 'dot'
    ? { kind: 'diverging', lo: -max, hi: max }
    : { kind: 'sequential', lo: 0, hi: max };
}

const rgbAt = (scale, v) => colour(scale.kind, (v - scale.lo) / (scale.hi - scale.lo));
const css = (rgb) => `rgb(${rgb.join(',')})`;

/** WCAG 2 relative luminance of an sRGB colour (channels 0 to 255). */
function luminance(rgb) {
  const [r, g, b] = rgb.map((c) => {
    const s = c / 255;
    return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/**
 * The text colour on a background `rgb`: black or white, whichever has the higher WCAG
 * contrast ratio. One of the two always reaches at least 4.58:1 (the worst case, where
 * both are equal, is √21).
 */
function textOn(rgb) {
  const l = luminance(rgb);
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? '#000' : '#fff';
}

/**
 * A cell's value in a few characters: three significant digits, in exponent form (`2.5e5`,
 * `-1.2e-5`) when plain digits would be long, `0` when it is 0 at the scale's size
 * (below a millionth of its largest value: rounding noise). The hover gives every digit.
 */
function short(v, scale, digits = 3) {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a === 0 || a < 1e-6 * Math.max(Math.abs(scale.lo), Math.abs(scale.hi))) return '0';
  if (a >= 1e-3 && a < 1e4) {
    const plain = Number(v.toPrecision(digits));
    return a >= 10 ** digits ? String(Math.round(v)) : String(plain);
  }
  const [mantissa, exponent] = v.toExponential(digits - 1).split('e');
  return `${Number(mantissa)}e${Number(exponent)}`;
}
const similarity = (metric) => metric === 'cosine' || metric === 'dot';

/** The shortest text that reads back as the same float32. */
function num(v) {
  const f = Math.fround(v);
  if (!Number.isFinite(f)) return String(f);
  for (let p = 1; p < 10; p++) {
    const s = f.toPrecision(p);
    if (Math.fround(Number(s)) === f) return String(Number(s));
  }
  return String(f);
}

// ---- Examples: the README's, which mirror the article's Keras examples, and the article's
// shapes with made-up (seeded, so always the same) embeddings.
function random(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const normal = (rand) => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
const round3 = (v) => Math.round(v * 1000) / 1000;
const vector = (rand, dim) => Array.from({ length: dim }, () => normal(rand));

/** `sets` sets of `n` vectors around three centres each: blocks in the matrices. */
function clustered(sets, n, dim) {
  const rand = random(7);
  return Array.from({ length: sets }, () => {
    const centres = [0, 1, 2].map(() => vector(rand, dim));
    return Array.from({ length: n }, (_, i) => centres[Math.floor((i * 3) / n)]
      .map((c) => round3(c + 0.8 * normal(rand))));
  });
}

/** `n` pairs whose cosines go from about 1 down to about -1. */
function turningPairs(n, dim) {
  const rand = random(11);
  return Array.from({ length: n }, (_, i) => {
    const a = vector(rand, dim);
    const noise = vector(rand, dim);
    const angle = (Math.PI * i) / (n - 1);
    return [a.map(round3), a.map((x, k) => round3(Math.cos(angle) * x + Math.sin(angle) * noise[k]))];
  });
}

const USERS = [[0.1, 0.9], [0.8, 0.2], [0.5, 0.5], [1, 0]];
const ITEMS = [[1, 0], [0, 1], [0.7, 0.7]];
const EXAMPLES = [
  ['Pairs: the Lambda layer over (batch, 2, dim)', 'pairwise',
    () => ({ pairs: [[[0.1, 0.3, 0.5], [0.2, 0.3, 0.4]], [[1, 0, -1], [1, 0, 1]]] })],
  ['Pairs: 10 of 128 dims, the article\'s (10, 2, 128)', 'pairwise',
    () => ({ pairs: turningPairs(10, 128) })],
  ['A matrix per set: (2, 3, 2) gives (2, 3, 3)', 'matrix',
    () => ({ a: [[[1, 0], [0.6, 0.8], [0, 1]], [[1, 1], [-1, -1], [1, 0]]] })],
  ['A matrix per set: the article\'s (5, 10, 128)', 'matrix',
    () => ({ a: clustered(5, 10, 128) })],
  ['Nearest neighbours, leaving each row out', 'matrix',
    () => ({ a: [[1, 0], [0.6, 0.8], [0, 1], [0.8, 0.6]], top_k: 2, exclude_self: true })],
  ['Users and items: given (user, item) pairs', 'user-item',
    () => ({ users: USERS, items: ITEMS, pairs: [[1, 0], [2, 2], [3, 1]] })],
  ['Users and items: top items per user, seen ones left out', 'user-item',
    () => ({ users: USERS.slice(0, 2), items: ITEMS, top_k: 2, exclude: [[1], []],
      item_ids: ['sku-1', 'sku-2', 'sku-3'] })],
  ['Users and items: the whole matrix', 'user-item', () => ({ users: USERS, items: ITEMS })],
  ['A base64 tensor', 'matrix',
    () => ({ a: { dtype: 'float32', shape: [2, 2], data: 'AACAPwAAAACamRk/zcxMPw==' } })],
];

// ---- The form.
const SIDES = { matrix: ['a', 'b'], pairwise: ['a', 'b'], 'user-item': ['users', 'items'] };
const LABELS = {
  matrix: ['a: rows, or sets of rows', 'b (optional): empty scores a against itself'],
  pairwise: ['a, or pairs (n, 2, dim) when b is empty', 'b: as many rows as a, or one'],
  'user-item': ['users: one row per user', 'items: one row per item'],
};
/** The form control a problem's field names, for each operation. */
const SLOTS = {
  a: 'a', b: 'b', users: 'a', items: 'b', top_k: 'top-k', threshold: 'threshold',
  exclude_self: 'exclude-self', exclude: 'exclude', item_ids: 'item-ids', metric: 'metric',
  response_encoding: 'encoding',
};
const control = (slot) => $(slot === 'a' || slot === 'b' ? `input-${slot}` : slot);

/** A problem found before sending, in the field `slot`. */
class FieldError extends Error {
  constructor(slot, message) {
    super(message);
    this.slot = slot;
  }
}

/** Compact JSON, with one row of a matrix per line. */
function pretty(v, indent = '') {
  if (!Array.isArray(v) || !v.some(Array.isArray)) return JSON.stringify(v);
  const inner = `${indent} `;
  return `[${v.map((x) => pretty(x, inner)).join(`,\n${inner}`)}]`;
}

function syncOperation() {
  const op = $('operation').value;
  for (const node of document.querySelectorAll('[data-ops]')) {
    node.hidden = !node.dataset.ops.split(' ').includes(op);
  }
  SIDES[op].forEach((name, i) => {
    const side = 'ab'[i];
    $(`${side}-legend`).textContent = name;
    $(`${side}-label`).textContent = LABELS[op][i];
  });
}

const A_HELP = $('a-help').textContent;

/** Fills the form from a request body for `op`. */
function fill(op, body) {
  const [an, bn] = SIDES[op];
  const a = op === 'pairwise' && body.pairs ? body.pairs : body[an];
  const list = (v) => (v === undefined ? '' : JSON.stringify(v));
  $('operation').value = op;
  $('metric').value = body.metric ?? 'cosine';
  $('input-a').value = a === undefined ? '' : pretty(a);
  $('input-b').value = body[bn] === undefined ? '' : pretty(body[bn]);
  $('top-k').value = body.top_k ?? '';
  $('threshold').value = body.threshold ?? '';
  $('exclude-self').checked = Boolean(body.exclude_self);
  $('pairs').value = op === 'user-item' ? list(body.pairs) : '';
  $('exclude').value = list(body.exclude);
  $('item-ids').value = list(body.item_ids);
  $('encoding').value = body.response_encoding ?? 'json';
  $('a-help').textContent = A_HELP;
  $('b-help').textContent = '';
  syncOperation();
  clearErrors();
}

/** The JSON of a text field, `undefined` when empty. */
function jsonOf(id, name, slot, required) {
  const text = $(id).value.trim();
  if (!text) {
    if (required) throw new FieldError(slot, `${name}: required`);
    return undefined;
  }
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new FieldError(slot, `${name}: not valid JSON (${err.message})`);
  }
  const where = nonFinite(value, name);
  if (where) throw new FieldError(slot, `${where}: not a finite number (beyond ±1.8e308, it reads as Infinity)`);
  return value;
}

/** The path (`a[0][1]`, `a.shape[0]`) of the first number in `value` that is not finite. */
function nonFinite(value, name) {
  if (typeof value === 'number') return Number.isFinite(value) ? null : name;
  if (!value || typeof value !== 'object') return null;
  // A stack, not recursion: deeply nested JSON must not overflow the call stack. Children
  // are pushed last first, so the first one found is the first in the text.
  const stack = [[value, name]];
  while (stack.length) {
    const [v, path] = stack.pop();
    if (typeof v === 'number') return path;
    const keys = Array.isArray(v) ? null : Object.keys(v);
    for (let i = (keys ?? v).length - 1; i >= 0; i--) {
      const child = keys ? v[keys[i]] : v[i];
      const pending = typeof child === 'number' ? !Number.isFinite(child) : child && typeof child === 'object';
      if (pending) stack.push([child, keys ? `${path}.${keys[i]}` : `${path}[${i}]`]);
    }
  }
  return null;
}

/**
 * The number in the number field `id`, `undefined` when empty. Text the browser cannot read
 * as a number (`2e`: validity.badInput, with an empty value) is refused, not taken as empty.
 */
function numberOf(id, name) {
  const field = $(id);
  if (field.validity.badInput) throw new FieldError(id, `${name}: not a number`);
  const text = field.value.trim();
  if (!text) return undefined;
  const v = Number(text);
  if (!Number.isFinite(v)) throw new FieldError(id, `${name}: not a finite number`);
  return v;
}

/** Names of the rows a table reference picks by id, if it does. */
function namesOf(v) {
  if (!v || Array.isArray(v) || typeof v !== 'object') return null;
  if (Array.isArray(v.ids)) return v.ids.map(String);
  return Array.isArray(v.rows) ? v.rows.map((r) => `${v.table}[${r}]`) : null;
}

/** The request the form describes: its route, body and the names of rows, where known. */
function build() {
  const op = $('operation').value;
  const [an, bn] = SIDES[op];
  const pairs = op === 'pairwise' && !$('input-b').value.trim();
  const a = jsonOf('input-a', pairs ? 'pairs' : an, 'a', true);
  const b = jsonOf('input-b', bn, 'b', op === 'user-item');
  const body = { [pairs ? 'pairs' : an]: a };
  if (b !== undefined) body[bn] = b;
  body.metric = $('metric').value;
  if (op !== 'pairwise') {
    const k = numberOf('top-k', 'top_k');
    const t = numberOf('threshold', 'threshold');
    if (k !== undefined) body.top_k = k;
    if (t !== undefined) body.threshold = t;
  }
  if (op === 'matrix' && $('exclude-self').checked) body.exclude_self = true;
  if (op === 'user-item') {
    for (const [id, name] of [['pairs', 'pairs'], ['exclude', 'exclude'], ['item-ids', 'item_ids']]) {
      const v = jsonOf(id, name, id, false);
      if (v !== undefined) body[name] = v;
    }
  }
  if ($('encoding').value === 'base64') body.response_encoding = 'base64';
  const rows = namesOf(a);
  return {
    op,
    path: `similarity/${op}`,
    body,
    text: JSON.stringify(body),
    rows,
    cols: b === undefined ? (op === 'matrix' ? rows : null) : namesOf(b),
  };
}

// ---- .npy files (float32 and float64, either byte order, C order), read in the page and
// sent as base64 tensors.
function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  const magic = String.fromCharCode(...bytes.subarray(1, 6));
  if (bytes[0] !== 0x93 || magic !== 'NUMPY') throw new Error('not a .npy file');
  const major = bytes[6];
  if (major < 1 || major > 3) throw new Error(`unknown .npy version ${major}`);
  const start = major === 1 ? 10 : 12;
  const length = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const header = new TextDecoder().decode(bytes.subarray(start, start + length));
  const descr = /'descr':\s*'([<>=|])f([48])'/.exec(header);
  if (!descr) throw new Error(`only float32 and float64 arrays are read: ${header.trim()}`);
  if (/'fortran_order':\s*True/.test(header)) {
    throw new Error('a Fortran-order array: save np.ascontiguousarray(x) instead');
  }
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header);
  let shape = shapeText ? shapeText[1].split(',').filter((s) => s.trim()).map(Number) : [];
  if (shape.length === 1) shape = [1, shape[0]];
  if (shape.length < 2 || shape.length > 3) {
    throw new Error(`an array of rank ${shape.length}: rows × dim or sets × rows × dim is needed`);
  }
  const size = Number(descr[2]);
  const count = shape.reduce((x, y) => x * y, 1);
  const data = bytes.slice(start + length, start + length + count * size);
  if (data.length !== count * size) throw new Error('the file is shorter than its shape says');
  if (descr[1] === '>') {
    for (let i = 0; i < data.length; i += size) data.subarray(i, i + size).reverse();
  }
  return { dtype: size === 4 ? 'float32' : 'float64', shape, data: base64(data) };
}

function base64(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

async function readFile(file, side) {
  const help = $(`${side}-help`);
  clearErrors();
  try {
    if (/\.json$/i.test(file.name)) {
      $(`input-${side}`).value = await file.text();
      help.textContent = `${file.name} read.`;
      return;
    }
    const tensor = parseNpy(await file.arrayBuffer());
    $(`input-${side}`).value = JSON.stringify(tensor);
    help.textContent = `${file.name}: ${tensor.dtype}, shape (${tensor.shape.join(', ')}), sent as a base64 tensor.`;
  } catch (err) {
    fieldError(side, `${file.name}: ${err.message}`);
  }
}

// ---- Server-side tables.
const auth = () => {
  const key = $('key').value.trim();
  if (/[^!-~]/.test(key)) throw new FieldError('key', 'API key: visible ASCII characters only (! to ~)');
  return key ? { authorization: `Bearer ${key}` } : {};
};

async function loadTables() {
  let tables = [];
  try {
    const answer = await fetch('tables', { headers: auth() });
    $('key-note').textContent = answer.status === 401
      ? 'this server asks for an API key' : 'kept in this page only';
    if (answer.ok) tables = (await answer.json()).tables;
  } catch {
    return;
  }
  for (const side of 'ab') {
    $(`table-${side}`).replaceChildren(...tables.map((t) => el('option', {
      value: t.name, textContent: `${t.name} (${t.rows} × ${t.dim}${t.ids ? ', ids' : ''})`,
    })));
    $(`side-${side}`).querySelector('.pick').hidden = tables.length === 0;
  }
}

function useTable(side) {
  const ref = { table: $(`table-${side}`).value };
  const field = $(`rows-${side}`);
  const items = field.value.split(/[\s,]+/).filter((s) => s && s !== 'all');
  const digits = items.every((s) => /^\d+$/.test(s));
  const as = $(`as-${side}`).value || (digits ? 'rows' : 'ids');
  const bad = as === 'rows' && !digits;
  $(`${side}-error`).textContent = bad ? 'rows: whole numbers only, or choose "as ids"' : '';
  if (bad) field.setAttribute('aria-invalid', 'true'); else field.removeAttribute('aria-invalid');
  if (bad) return;
  if (items.length) ref[as] = as === 'rows' ? items.map(Number) : items;
  $(`input-${side}`).value = JSON.stringify(ref);
}

// ---- Errors: the problem's detail next to the field it names, and with its request id.
function clearErrors() {
  $('error').hidden = true;
  for (const node of document.querySelectorAll('.field-error')) node.textContent = '';
  for (const node of document.querySelectorAll('[aria-invalid]')) node.removeAttribute('aria-invalid');
  for (const node of document.querySelectorAll('.invalid')) node.classList.remove('invalid');
}

function fieldError(slot, message) {
  const input = control(slot);
  $(`${slot}-error`).textContent = message;
  input.classList.add('invalid');
  input.setAttribute('aria-invalid', 'true');
}

/** The slot of the field a problem's detail starts with (`a[1]: …`, `b.shape[0]: …`). */
function slotOf(detail, op) {
  const field = /^([a-z_]+)(?=[[.:])/.exec(detail ?? '')?.[1];
  if (field === 'pairs') return op === 'pairwise' ? 'a' : 'pairs';
  return SLOTS[field];
}

function showError(problem, slot, requestId) {
  for (const id of ['sets', 'plot', 'table-box', 'downloads']) $(id).hidden = true;
  $('summary').textContent = '';
  const head = problem.status ? `${problem.status} ${problem.title ?? ''}`.trim() : problem.title;
  const box = $('error');
  box.replaceChildren(el('p', {}, el('strong', { textContent: head }), `: ${problem.detail ?? ''}`));
  if (requestId) box.append(el('p', { className: 'rid', textContent: `request id: ${requestId}` }));
  box.hidden = false;
  if (slot) fieldError(slot, problem.detail);
  if (problem.status === 401) {
    fieldError('key', $('key').value.trim() ? 'this key was refused' : 'enter the API key this server asks for');
  }
}

// ---- Sending.
const view = { result: null, set: 0, cursor: null, row: null, busy: false };

function showCurl(request) {
  const quote = (s) => `'${s.replaceAll("'", "'\\''")}'`;
  const big = request.text.length > 200000;
  const lines = [`curl -s ${quote(new URL(request.path, document.baseURI).href)}`,
    "-H 'content-type: application/json'"];
  if (auth().authorization) lines.push('-H "authorization: Bearer $SIMSERVE_API_KEY"');
  lines.push(big ? '--data-binary @request.json' : `-d ${quote(request.text)}`);
  $('curl').textContent = lines.join(' \\\n  ');
  $('save-request').hidden = !big;
  $('curl-box').hidden = false;
}

async function compute(event) {
  event.preventDefault();
  if (view.busy) return;
  clearErrors();
  let request;
  try {
    request = build();
    auth();
  } catch (err) {
    if (!(err instanceof FieldError)) throw err;
    $('curl-box').hidden = true;
    showError({ title: 'Not sent', detail: err.message }, err.slot, null);
    return;
  }
  view.request = request;
  showCurl(request);
  busy(true);
  const started = performance.now();
  let answer;
  let text;
  try {
    answer = await fetch(request.path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth() },
      body: request.text,
    });
    text = await answer.text();
  } catch (err) {
    busy(false);
    showError({ title: 'No answer', detail: `the request failed: ${err.message}` }, null, null);
    return;
  }
  const ms = Math.round(performance.now() - started);
  const requestId = answer.headers.get('x-request-id');
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  try {
    if (!answer.ok || !body) {
      const problem = body ?? { status: answer.status, title: answer.statusText, detail: text.slice(0, 300) };
      showError(problem, slotOf(problem.detail, request.op), body?.request_id ?? requestId);
      return;
    }
    show(request, body, text, ms, requestId);
  } catch (err) {
    // The server answered; the page failed to show it. Say so, not that the request failed.
    showError({
      title: 'Not shown',
      detail: `the server answered ${answer.status}, but this page could not show the answer (${err.message}); download it with the curl command below`,
    }, null, requestId);
  } finally {
    busy(false);
  }
}

/**
 * Marks a request in flight. The button is not `disabled` (that would drop the keyboard
 * focus to the page's start): it is aria-disabled, and compute() ignores it meanwhile.
 */
function busy(on) {
  view.busy = on;
  const button = $('compute');
  if (on) button.setAttribute('aria-disabled', 'true');
  else button.removeAttribute('aria-disabled');
  $('busy').textContent = on ? 'computing…' : '';
}

// ---- Answers, read into flat float32 arrays.
/** A float tensor of an answer (nested arrays or a base64 object): shape and values. */
function tensor(node) {
  if (node && !Array.isArray(node) && typeof node === 'object') {
    const bytes = Uint8Array.from(atob(node.data), (c) => c.charCodeAt(0));
    return { shape: node.shape, values: new Float32Array(bytes.buffer) };
  }
  const shape = [];
  for (let x = node; Array.isArray(x); x = x[0]) shape.push(x.length);
  return { shape, values: Float32Array.from(node.flat(Infinity)) };
}

/** Top-k or threshold lists: per set, per row, indices, scores and the names of entries. */
function neighbourSets(body) {
  const sets = Array.isArray(body.indices[0]?.[0]);
  const indices = sets ? body.indices : [body.indices];
  const names = body.ids ?? body.items;
  const nameSets = names ? (sets ? names : [names]) : null;
  let scores;
  if (Array.isArray(body.scores)) {
    scores = (sets ? body.scores : [body.scores]).map((rows) => rows.map((row) => (
      Array.isArray(row) ? row : Array.from(tensor(row).values))));
  } else {
    const flat = tensor(body.scores).values;
    let at = 0;
    scores = indices.map((rows) => rows.map((row) => Array.from(flat.subarray(at, (at += row.length)))));
  }
  return indices.map((rows, s) => rows.map((index, r) => ({
    index, score: scores[s][r], names: nameSets?.[s]?.[r] ?? null,
  })));
}

function show(request, body, text, ms, requestId) {
  const kind = 'matrix' in body ? 'matrix' : 'indices' in body ? 'neighbours' : 'scores';
  const result = { request, body, text, kind, metric: body.metric };
  let all;
  if (kind === 'neighbours') {
    result.sets = neighbourSets(body);
    all = result.sets.flat().flatMap((row) => row.score);
  } else {
    Object.assign(result, tensor(body[kind === 'matrix' ? 'matrix' : 'scores']));
    all = result.values;
  }
  result.scale = scaleFor(body.metric, all);
  result.count = kind === 'neighbours' ? result.sets.length
    : kind === 'matrix' && result.shape.length === 3 ? result.shape[0] : 1;
  view.result = result;
  view.set = 0;
  view.row = null;
  view.cursor = null;
  const shape = body.shape ? `(${body.shape.join(', ')})` : 'rows of different lengths';
  const summary = $('summary');
  summary.replaceChildren(`${kind} ${shape} · ${body.metric} · ${ms} ms · POST /${request.path}`);
  if (body.tables) summary.append(` · tables ${Object.keys(body.tables).join(', ')}`);
  if (requestId) summary.append(' · request id ', el('span', { className: 'rid', textContent: requestId }));
  $('sets').hidden = result.count < 2;
  $('set').max = result.count;
  $('set-count').textContent = `of ${result.count}`;
  const regular = kind !== 'neighbours' || Boolean(body.shape);
  $('downloads').hidden = false;
  $('save-npy').hidden = !regular;
  $('save-npy').textContent = kind === 'neighbours' ? 'scores .npy' : 'Download .npy';
  $('save-indices').hidden = kind !== 'neighbours' || !regular;
  drawLegend(result.scale, body.metric);
  redraw();
}

function redraw() {
  const result = view.result;
  $('set').value = view.set + 1;
  $('plot').hidden = result.kind === 'neighbours';
  $('table-box').hidden = result.kind !== 'neighbours';
  $('neighbours').replaceChildren();
  $('hover').textContent = '\u00a0';
  if (result.kind === 'neighbours') drawTable();
  else if (result.kind === 'matrix') drawHeatmap();
  else drawBars();
}

// ---- The heatmap (and, for pairwise scores, a bar strip) on one canvas; an overlay canvas
// marks the cell under the pointer, so the heatmap's own pixels are only the scale's.
const PLOT = 480;
const CELL_MAX = 64;

function drawLegend(scale, metric) {
  const canvas = $('legend');
  const context = canvas.getContext('2d');
  for (let x = 0; x < canvas.width; x++) {
    context.fillStyle = css(colour(scale.kind, x / (canvas.width - 1)));
    context.fillRect(x, 0, 1, canvas.height);
  }
  setData(canvas, { kind: scale.kind, lo: scale.lo, hi: scale.hi });
  const tick = (v) => String(Number(v.toPrecision(3)));
  $('legend-lo').textContent = tick(scale.lo);
  $('legend-mid').textContent = tick((scale.lo + scale.hi) / 2);
  $('legend-hi').textContent = tick(scale.hi);
  $('legend-caption').textContent = {
    cosine: 'cosine: -1 opposite, 0 unrelated, 1 same direction; greater is nearer',
    dot: 'dot product, centred on 0; greater is nearer',
    euclidean: 'euclidean distance from 0; smaller is nearer',
    manhattan: 'manhattan distance from 0; smaller is nearer',
  }[metric];
}

/** The set shown: an n × m block of the matrix. */
function matrixSet() {
  const { shape, values } = view.result;
  const [n, m] = shape.slice(-2);
  return { n, m, values: values.subarray(view.set * n * m, (view.set + 1) * n * m) };
}

function drawHeatmap() {
  const { metric, scale, request } = view.result;
  const { n, m, values } = matrixSet();
  const stepR = Math.ceil(n / PLOT);
  const stepC = Math.ceil(m / PLOT);
  const rows = Math.ceil(n / stepR);
  const cols = Math.ceil(m / stepC);
  let cellW = clamp(Math.floor(PLOT / cols), 1, CELL_MAX);
  let cellH = clamp(Math.floor(PLOT / rows), 1, CELL_MAX);
  if (Math.min(cellW, cellH) > 1) cellW = cellH = Math.min(cellW, cellH);
  const labels = cellW >= 14 && cellH >= 14;
  const x0 = labels ? 56 : 0;
  const y0 = labels ? 18 : 0;
  const canvas = $('heatmap');
  canvas.width = x0 + cols * cellW;
  canvas.height = y0 + rows * cellH;
  // Cells of one pixel: shown larger (pixelated), the canvas itself unchanged.
  const zoom = PLOT / Math.max(canvas.width, canvas.height);
  canvas.style.width = Math.min(cellW, cellH) === 1 && zoom > 1.2 ? `${Math.floor(canvas.width * zoom)}px` : '';
  const context = canvas.getContext('2d');
  context.fillStyle = '#fff';
  context.fillRect(0, 0, canvas.width, canvas.height);
  const image = context.createImageData(cols * cellW, rows * cellH);
  const means = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = blockMean(values, m, r * stepR, Math.min(n, (r + 1) * stepR), c * stepC,
        Math.min(m, (c + 1) * stepC));
      means[r * cols + c] = v;
      const rgb = rgbAt(scale, v);
      for (let y = r * cellH; y < (r + 1) * cellH; y++) {
        for (let x = c * cellW; x < (c + 1) * cellW; x++) {
          image.data.set([...rgb, 255], (y * cols * cellW + x) * 4);
        }
      }
    }
  }
  context.putImageData(image, x0, y0);
  setData(canvas, {
    kind: 'heatmap', rows: n, cols: m, stepR, stepC, cellW, cellH, x0, y0, lo: scale.lo, hi: scale.hi,
  });
  context.font = '11px system-ui, sans-serif';
  if (labels) {
    context.fillStyle = '#57606a';
    context.textBaseline = 'middle';
    context.textAlign = 'right';
    for (let r = 0; r < rows; r++) {
      context.fillText(fit(context, nameOf(request.rows, r), x0 - 6), x0 - 4, y0 + (r + 0.5) * cellH);
    }
    context.textAlign = 'center';
    for (let c = 0; c < cols; c++) {
      context.fillText(String(c), x0 + (c + 0.5) * cellW, y0 / 2);
    }
  }
  if (cellW >= 44 && cellH >= 22) {
    context.textAlign = 'center';
    context.textBaseline = 'middle';
    for (let i = 0; i < means.length; i++) {
      // The shortest form that fits the cell (with 2 pixels each side), else no text.
      let label = short(means[i], scale);
      if (context.measureText(label).width > cellW - 4) label = short(means[i], scale, 2);
      if (context.measureText(label).width > cellW - 4) continue;
      context.fillStyle = textOn(rgbAt(scale, means[i]));
      context.fillText(label, x0 + ((i % cols) + 0.5) * cellW, y0 + (Math.floor(i / cols) + 0.5) * cellH);
    }
  }
  canvas.setAttribute('aria-label', `heatmap of ${n} × ${m} ${metric} scores; arrow keys move, Enter lists a row's nearest`);
  $('plot-help').textContent = 'Point at a cell for its value; click a row (or Enter) for its nearest neighbours.';
  $('note').textContent = stepR > 1 || stepC > 1
    ? `${n} × ${m} drawn down-sampled as ${rows} × ${cols}: each cell is the mean of a block of ${stepR} × ${stepC}; download the result for every value.`
    : '';
  drawOverlay();
}

function blockMean(values, m, r0, r1, c0, c1) {
  let sum = 0;
  for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) sum += values[r * m + c];
  return sum / ((r1 - r0) * (c1 - c0));
}

/** The name of row `i` (cut to `width` characters), or its index. */
function nameOf(names, i) {
  return names?.[i] ?? String(i);
}

/** `text`, cut to whole code points and an ellipsis until it measures at most `width` px. */
function fit(context, text, width) {
  const chars = [...text];
  if (context.measureText(text).width <= width) return text;
  while (chars.length && context.measureText(`${chars.join('')}…`).width > width) chars.pop();
  return `${chars.join('')}…`;
}

function drawBars() {
  const { scale, values, metric } = view.result;
  const n = values.length;
  const step = Math.ceil(n / PLOT);
  const bars = Math.ceil(n / step);
  const width = clamp(Math.floor(PLOT / bars), 1, 40);
  const height = 160;
  const base = scale.kind === 'diverging' ? height / 2 : height;
  const canvas = $('heatmap');
  canvas.style.width = '';
  canvas.width = bars * width;
  canvas.height = height;
  const context = canvas.getContext('2d');
  context.fillStyle = '#fff';
  context.fillRect(0, 0, canvas.width, height);
  const gap = width >= 4 ? 1 : 0;
  for (let i = 0; i < bars; i++) {
    const v = blockMean(values, 1, i * step, Math.min(n, (i + 1) * step), 0, 1);
    const h = Math.max(1, Math.round((Math.abs(v) / scale.hi) * base));
    context.fillStyle = css(rgbAt(scale, v));
    context.fillRect(i * width + gap, v >= 0 ? base - h : base, width - 2 * gap, h);
  }
  context.fillStyle = '#57606a';
  context.fillRect(0, base === height ? height - 1 : base, canvas.width, 1);
  setData(canvas, { kind: 'bars', count: n, step, barW: width, base, lo: scale.lo, hi: scale.hi });
  canvas.setAttribute('aria-label', `bar strip of ${n} ${metric} scores; arrow keys move`);
  $('plot-help').textContent = 'One bar per pair; point at a bar for its value.';
  $('note').textContent = step > 1
    ? `${n} scores drawn down-sampled as ${bars} bars: each is the mean of ${step}; download the result for every value.`
    : '';
  drawOverlay();
}

/** The drawn cell under a pointer event, or null. */
function cellAt(event) {
  const canvas = $('heatmap');
  const box = canvas.getBoundingClientRect();
  const d = canvas.dataset;
  const x = ((event.clientX - box.left) * canvas.width) / box.width - Number(d.x0 ?? 0);
  const y = ((event.clientY - box.top) * canvas.height) / box.height - Number(d.y0 ?? 0);
  if (d.kind === 'bars') {
    const c = Math.floor(x / Number(d.barW));
    return x >= 0 && c < Math.ceil(Number(d.count) / Number(d.step)) ? { r: 0, c } : null;
  }
  const r = Math.floor(y / Number(d.cellH));
  const c = Math.floor(x / Number(d.cellW));
  const inside = x >= 0 && y >= 0 && r < Math.ceil(d.rows / d.stepR) && c < Math.ceil(d.cols / d.stepC);
  return inside ? { r, c } : null;
}

/** `i` (`i0–i1` when down-sampled) with the name of the row, where known. */
function span(names, at, step, count) {
  const first = at * step;
  const last = Math.min(count, first + step) - 1;
  if (first === last) return names?.[first] === undefined ? `${first}` : `${first} (${names[first]})`;
  return `${first}–${last}`;
}

function describe(cell) {
  const canvas = $('heatmap');
  const d = canvas.dataset;
  const { request, values, body } = view.result;
  if (d.kind === 'bars') {
    const step = Number(d.step);
    const n = values.length;
    const first = cell.c * step;
    const last = Math.min(n, first + step) - 1;
    if (first !== last) {
      return `pairs ${first}–${last}, mean = ${num(blockMean(values, 1, first, last + 1, 0, 1))}`;
    }
    const pair = request.body.pairs && request.op === 'user-item'
      ? ` (user ${request.body.pairs[first][0]}, item ${request.body.pairs[first][1]})` : '';
    return `pair ${first}${pair}, value = ${num(values[first])}`;
  }
  const { n, m, values: set } = matrixSet();
  const stepR = Number(d.stepR);
  const stepC = Number(d.stepC);
  const i = span(request.rows, cell.r, stepR, n);
  const j = span(request.cols, cell.c, stepC, m);
  const prefix = view.result.count > 1 ? `set ${view.set + 1}: ` : '';
  if (stepR === 1 && stepC === 1) {
    return `${prefix}i = ${i}, j = ${j}, value = ${num(set[cell.r * m + cell.c])}`;
  }
  const mean = blockMean(set, m, cell.r * stepR, Math.min(n, (cell.r + 1) * stepR), cell.c * stepC,
    Math.min(m, (cell.c + 1) * stepC));
  return `${prefix}i = ${i}, j = ${j}, mean = ${num(mean)} (${body.shape.join(' × ')} down-sampled)`;
}

function drawOverlay() {
  const canvas = $('heatmap');
  const overlay = $('overlay');
  overlay.width = canvas.width;
  overlay.height = canvas.height;
  overlay.style.width = `${canvas.getBoundingClientRect().width}px`;
  const context = overlay.getContext('2d');
  context.clearRect(0, 0, overlay.width, overlay.height);
  const d = canvas.dataset;
  const x0 = Number(d.x0 ?? 0);
  const y0 = Number(d.y0 ?? 0);
  const w = Number(d.kind === 'bars' ? d.barW : d.cellW);
  const h = d.kind === 'bars' ? canvas.height : Number(d.cellH);
  context.lineWidth = 2;
  if (view.row !== null && d.kind === 'heatmap') {
    context.strokeStyle = '#f2a900';
    context.strokeRect(x0 + 1, y0 + view.row * h + 1, canvas.width - x0 - 2, h - 2);
  }
  if (view.cursor) {
    context.strokeStyle = '#000';
    context.strokeRect(x0 + view.cursor.c * w + 1, y0 + view.cursor.r * h + 1, w - 2, h - 2);
  }
}

function point(cell) {
  view.cursor = cell;
  $('hover').textContent = cell ? describe(cell) : '\u00a0';
  drawOverlay();
}

/** Lists the nearest entries of the drawn row `r` (its first row when down-sampled). */
function listRow(r) {
  const d = $('heatmap').dataset;
  if (d.kind !== 'heatmap') return;
  view.row = r;
  drawOverlay();
  const { request, metric } = view.result;
  const { m, values } = matrixSet();
  const i = r * Number(d.stepR);
  const order = Array.from({ length: m }, (_, j) => j);
  const row = values.subarray(i * m, (i + 1) * m);
  order.sort((x, y) => (similarity(metric) ? row[y] - row[x] : row[x] - row[y]) || x - y);
  const list = el('ol', {});
  for (const j of order.slice(0, 10)) {
    const self = request.op === 'matrix' && !('b' in request.body) && i === j;
    list.append(el('li', { textContent: `j = ${nameOf(request.cols, j)}: ${num(row[j])}${self ? ' (itself)' : ''}` }));
  }
  $('neighbours').replaceChildren(
    el('p', { textContent: `Nearest to row ${nameOf(request.rows, i)}${order.length > 10 ? ' (first 10)' : ''}:` }),
    list,
  );
}

// ---- Top-k and threshold answers as a table.
const TABLE_ROWS = 200;

function drawTable() {
  const { sets, scale, request, body } = view.result;
  const rows = sets[view.set];
  // A loop, not Math.max(...rows): spreading 100,000s of rows overflows the call stack.
  let width = 0;
  for (const row of rows) width = Math.max(width, row.index.length);
  const what = request.op === 'user-item' ? 'items of each user' : 'rows nearest to each row';
  const { top_k: k, threshold: t } = request.body;
  // What passes a threshold: a similarity at least t, a distance at most t.
  const within = similarity(view.result.metric) ? 'scoring at least' : 'at a distance of at most';
  const bound = t === undefined ? '' : `, ${within} ${t} (the threshold)`;
  const table = el('table', {}, el('caption', {
    textContent: `${k ? `the top ${k}` : 'the'} ${what}${bound}, nearest first${sets.length > 1 ? ` (set ${view.set + 1})` : ''}`,
  }));
  const head = el('tr', {}, el('th', { scope: 'col', textContent: request.op === 'user-item' ? 'user' : 'row' }));
  for (let k = 0; k < width; k++) head.append(el('th', { scope: 'col', textContent: `#${k + 1}` }));
  table.append(el('thead', {}, head));
  const tbody = el('tbody');
  rows.slice(0, TABLE_ROWS).forEach((row, i) => {
    const tr = el('tr', {}, el('th', { scope: 'row', textContent: nameOf(request.rows, i) }));
    row.index.forEach((j, k) => {
      const swatch = el('span', { className: 'swatch', textContent: '■ ' });
      swatch.style.color = css(rgbAt(scale, row.score[k]));
      const name = row.names?.[k];
      const cell = el('td', {}, swatch, `${j} `, name ? el('small', { textContent: `${name} ` }) : '',
        num(row.score[k]));
      Object.assign(cell.dataset, { index: j, score: num(row.score[k]) });
      tr.append(cell);
    });
    tbody.append(tr);
  });
  table.append(tbody);
  const notes = [];
  if (rows.length > TABLE_ROWS) notes.push(`first ${TABLE_ROWS} of ${rows.length} rows shown; download the result for all.`);
  if (!width) notes.push('no entries: every row is empty.');
  $('table-box').replaceChildren(table, ...notes.map((text) => el('p', { className: 'note', textContent: text })));
}

// ---- Downloads: the answer as it came (JSON), and its arrays as .npy files.
function npy(descr, shape, typed) {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += `${' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64)}\n`;
  const out = new Uint8Array(10 + header.length + typed.byteLength);
  out.set([0x93, 78, 85, 77, 80, 89, 1, 0, header.length & 255, header.length >> 8]);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength), 10 + header.length);
  return out;
}

function save(name, bytes, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const link = el('a', { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function saveNpy(indices) {
  const { kind, body, values, sets, request } = view.result;
  const stem = `simserve-${request.op}`;
  if (kind !== 'neighbours') {
    save(`${stem}.npy`, npy('<f4', body.shape, values), 'application/octet-stream');
  } else if (indices) {
    const flat = sets.flat().flatMap((row) => row.index);
    save(`${stem}-indices.npy`, npy('<i8', body.shape, BigInt64Array.from(flat, BigInt)), 'application/octet-stream');
  } else {
    const flat = Float32Array.from(sets.flat().flatMap((row) => row.score));
    save(`${stem}-scores.npy`, npy('<f4', body.shape, flat), 'application/octet-stream');
  }
}

// ---- Wiring.
/** Shows set `to` (from 0): a whole number, clamped to the sets there are. */
function moveSet(to) {
  if (!view.result) return;
  view.set = clamp(Number.isFinite(to) ? Math.round(to) : 0, 0, view.result.count - 1);
  view.row = null;
  view.cursor = null;
  redraw();
}

function keys(event) {
  const d = $('heatmap').dataset;
  const rows = d.kind === 'bars' ? 1 : Math.ceil(d.rows / d.stepR);
  const cols = d.kind === 'bars' ? Math.ceil(d.count / d.step) : Math.ceil(d.cols / d.stepC);
  const at = view.cursor ?? { r: 0, c: 0 };
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  if (moves[event.key] && !view.cursor) {
    // The first arrow key shows the first cell; the next ones move from there.
    point({ r: 0, c: 0 });
  } else if (moves[event.key]) {
    const [dr, dc] = moves[event.key];
    point({ r: clamp(at.r + dr, 0, rows - 1), c: clamp(at.c + dc, 0, cols - 1) });
  } else if (event.key === 'Enter' || event.key === ' ') {
    listRow(at.r);
  } else if (event.key === 'Escape') {
    point(null);
    return;
  } else {
    return;
  }
  event.preventDefault();
}

function start() {
  $('example').replaceChildren(...EXAMPLES.map(([label], i) => el('option', { value: i, textContent: label })));
  $('load-example').addEventListener('click', () => {
    const [, op, body] = EXAMPLES[Number($('example').value)];
    fill(op, body());
  });
  $('operation').addEventListener('change', syncOperation);
  $('form').addEventListener('submit', compute);
  $('key').addEventListener('change', loadTables);
  $('input-a').addEventListener('change', () => {
    // A whole request pasted into a: fill the form from it.
    let v;
    try {
      v = JSON.parse($('input-a').value);
    } catch {
      return;
    }
    if (!v || Array.isArray(v) || typeof v !== 'object' || 'dtype' in v || 'table' in v) return;
    if ('users' in v) fill('user-item', v);
    else if ('a' in v) fill($('operation').value === 'pairwise' ? 'pairwise' : 'matrix', v);
    else if ('pairs' in v) fill('pairwise', v);
  });
  for (const side of 'ab') {
    const area = $(`input-${side}`);
    $(`file-${side}`).addEventListener('change', (event) => {
      if (event.target.files[0]) readFile(event.target.files[0], side);
      event.target.value = '';
    });
    area.addEventListener('dragover', (event) => {
      event.preventDefault();
      area.classList.add('drop');
    });
    area.addEventListener('dragleave', () => area.classList.remove('drop'));
    area.addEventListener('drop', (event) => {
      event.preventDefault();
      area.classList.remove('drop');
      if (event.dataTransfer.files[0]) readFile(event.dataTransfer.files[0], side);
    });
    $(`use-${side}`).addEventListener('click', () => useTable(side));
  }
  const canvas = $('heatmap');
  canvas.addEventListener('mousemove', (event) => point(cellAt(event)));
  canvas.addEventListener('mouseleave', () => point(null));
  canvas.addEventListener('click', (event) => {
    const cell = cellAt(event);
    if (cell) listRow(cell.r);
  });
  canvas.addEventListener('keydown', keys);
  // The field holds the set drawn: a fraction (2.5) is rounded, text the browser cannot read
  // (badInput, an empty value) goes back to the set shown.
  $('set').addEventListener('change', () => {
    const field = $('set');
    moveSet(field.validity.badInput || field.value === '' ? view.set : Number(field.value) - 1);
  });
  $('set-prev').addEventListener('click', () => moveSet(view.set - 1));
  $('set-next').addEventListener('click', () => moveSet(view.set + 1));
  $('save-json').addEventListener('click', () => save(`simserve-${view.result.request.op}.json`, view.result.text, 'application/json'));
  $('save-npy').addEventListener('click', () => saveNpy(false));
  $('save-indices').addEventListener('click', () => saveNpy(true));
  $('save-request').addEventListener('click', () => save('request.json', view.request.text, 'application/json'));
  $('copy-curl').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText($('curl').textContent);
      $('copy-curl').textContent = 'Copied';
    } catch {
      getSelection().selectAllChildren($('curl'));
    }
  });
  $('summary').setAttribute('aria-live', 'polite');
  addEventListener('resize', () => view.result && drawOverlay());
  $('example').value = 2;
  fill(EXAMPLES[2][1], EXAMPLES[2][2]());
  loadTables();
}

start();
