// strongroom-por-v1 proof verifier for the browser (POR_FORMATS.md §1).
//
// A line-by-line reading of strongroom_verify/por_v1.py: the same parsing rules, the same checks
// under the same names ("structure", "pieces", "leaf indices", "pieces add up", "leaf index",
// "path length", "balance overflow", "root", "totals", "shared nodes"), so both give the same
// verdict on any proof (tests/web cross-checks them on random proofs). SHA-256 is Web Crypto's
// crypto.subtle.digest (secure contexts only: HTTPS or localhost); amounts are BigInt, never
// Number. No dependency, ES2020.
//
//   enc(B)    = u128be(B[0]) ‖ … ‖ u128be(B[n-1])          (assets sorted by code)
//   user_tag  = H("strongroom-por-v1/user" ‖ 0x00 ‖ user_salt ‖ utf8(account_id))
//   leaf      = H(0x00 ‖ user_tag ‖ u32be(piece) ‖ enc(B_piece))
//   node      = H(0x01 ‖ h_left ‖ enc(B_left) ‖ h_right ‖ enc(B_right)),  B_node = B_left + B_right
//
// Where JSON itself differs: JSON.parse keeps the last of two duplicate keys (Python refuses the
// file) and reads 5.0 as the integer 5 (Python: not an integer). Neither can make a wrong proof
// pass: every value that is checked is the value that is shown.
//
// Every message for the user is marked N_('msgid with %(name)s placeholders', {name: value}):
// pybabel's javascript extractor finds the msgids (the `reserves` catalog domain), `text` is the
// English, and the page (verify.js) shows the translation from the catalog the server rendered
// into it. A value may itself be a message, or an amount (`amountParam`), which the page formats
// with the locale's symbols.

export const FORMAT = 'strongroom-por-v1';
export const U128_MAX = (1n << 128n) - 1n;
export const MAX_PROOF_BYTES = 4 * 1024 * 1024; // a 16-piece proof of a 2^48-leaf tree is < 1 MiB

const HASH_BYTES = 32;
const SALT_BYTES = 32;
const MAX_ACCOUNT_ID_BYTES = 64;
const MAX_PIECES = 16;
const MAX_HEIGHT = 48;
const MAX_ASSETS = 256;
const MAX_SCALE = 38;
const MAX_AMOUNT_CHARS = 80;
const MAX_FAILURES_PER_CHECK = 5;

const AMOUNT = /^([0-9]+)(?:\.([0-9]+))?$/;
const ASSET_CODE = /^[A-Za-z0-9._-]{1,32}$/;
const LOWER_HEX = /^[0-9a-f]*$/;
const UTF8 = new TextEncoder();
const USER_DOMAIN = UTF8.encode('strongroom-por-v1/user');

// ---------------------------------------------------------------------------------------------
// Messages

const PLACEHOLDER = /%\(([A-Za-z_][A-Za-z0-9_]*)\)s/g;

/** A message for the user: {key: its msgid, params, text: the English}. */
export function N_(key, params = {}) {
  return { key, params, text: fill(key, params, textOf) };
}

/** `template` with each %(name)s replaced by show(params[name]) (unknown names stay). */
export function fill(template, params, show) {
  return template.replace(PLACEHOLDER, (whole, name) => (has(params, name) ? show(params[name]) : whole));
}

/** An amount as a message parameter: exact decimal text, formatted per locale by the page. */
export function amountParam(text) {
  return { amount: text, text };
}

function textOf(value) {
  return isObject(value) && typeof value.text === 'string' ? value.text : String(value);
}

/** An error whose message is marked for translation (`detail`, an N_ message). */
export class Problem extends Error {
  constructor(detail) {
    super(detail.text);
    this.detail = detail;
  }
}

/** The file does not have the shape the format requires; the message says where. */
export class ProofError extends Problem {}

function detailOf(error) {
  return error instanceof Problem ? error.detail : error.message;
}

// ---------------------------------------------------------------------------------------------
// Primitives

/** "12.5" with scale 8 → 1250000000n. Throws (saying why) for a sign, an exponent, whitespace,
 * more decimals than the scale, or a value over 2^128−1. */
export function parseAmount(text, scale) {
  if (typeof text !== 'string') throw new Problem(N_('amount must be a string'));
  if (!Number.isInteger(scale) || scale < 0 || scale > MAX_SCALE) {
    throw new Problem(N_('scale must be 0..%(max)s', { max: MAX_SCALE }));
  }
  const match = text.length <= MAX_AMOUNT_CHARS ? AMOUNT.exec(text) : null;
  if (match === null) throw new Problem(amountProblem(text));
  const whole = match[1];
  const fraction = match[2] || '';
  if (fraction.length > scale) {
    throw new Problem(N_("'%(text)s' has more decimals than the scale %(scale)s", { text, scale }));
  }
  const amount = BigInt(whole) * 10n ** BigInt(scale) + BigInt(fraction.padEnd(scale, '0') || '0');
  if (amount > U128_MAX) throw new Problem(N_("'%(text)s' is over 2^128-1 minor units", { text }));
  return amount;
}

function amountProblem(text) {
  const shown = { text: text.slice(0, MAX_AMOUNT_CHARS) };
  if (text.length > MAX_AMOUNT_CHARS) return N_("'%(text)s'... is too long", shown);
  if (text !== '' && (text[0] === '+' || text[0] === '-')) return N_("'%(text)s' has a sign", shown);
  if (/\s/.test(text)) return N_("'%(text)s' contains whitespace", shown);
  if (/e/i.test(text)) return N_("'%(text)s' has an exponent", shown);
  return N_("'%(text)s' is not a plain decimal amount", shown);
}

/** 1250000000n with scale 8 → "12.50000000" (always `scale` decimals). */
export function formatAmount(amount, scale) {
  if (typeof amount !== 'bigint' || amount < 0n || amount > U128_MAX) {
    throw new Error('amount must be in 0..2^128-1');
  }
  if (scale === 0) return amount.toString();
  const factor = 10n ** BigInt(scale);
  return `${amount / factor}.${(amount % factor).toString().padStart(scale, '0')}`;
}

function formatAny(amount, scale) {
  return amount <= U128_MAX
    ? amountParam(formatAmount(amount, scale))
    : N_('%(amount)s minor units', { amount: amount.toString() });
}

/** u128be of each amount, in asset order. */
export function enc(vector) {
  const out = new Uint8Array(16 * vector.length);
  vector.forEach((amount, position) => {
    if (typeof amount !== 'bigint' || amount < 0n || amount > U128_MAX) {
      throw new Error(`amount ${amount} is outside 0..2^128-1`);
    }
    let rest = amount;
    for (let byte = 15; byte >= 0; byte -= 1) {
      out[16 * position + byte] = Number(rest & 0xffn);
      rest >>= 8n;
    }
  });
  return out;
}

function u32be(value) {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, false);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((size, part) => size + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

async function sha256(bytes) {
  if (!globalThis.crypto || !globalThis.crypto.subtle) {
    throw new Problem(N_('Web Crypto is not available: open this page over HTTPS'));
  }
  return new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes));
}

export function toHex(bytes) {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

function fromHex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i += 1) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function sameBytes(a, b) {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function sameVector(a, b) {
  return a.length === b.length && a.every((amount, i) => amount === b[i]);
}

function hasLoneSurrogate(text) {
  for (let i = 0; i < text.length; i += 1) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return true;
      i += 1;
    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
      return true;
    }
  }
  return false;
}

function accountIdBytes(accountId) {
  if (hasLoneSurrogate(accountId)) throw new Problem(N_('account_id is not valid Unicode'));
  const encoded = UTF8.encode(accountId);
  if (encoded.length < 1 || encoded.length > MAX_ACCOUNT_ID_BYTES) {
    throw new Problem(N_('account_id must be 1..%(max)s UTF-8 bytes', { max: MAX_ACCOUNT_ID_BYTES }));
  }
  return encoded;
}

/** H("strongroom-por-v1/user" ‖ 0x00 ‖ user_salt ‖ account_id). */
export async function userTag(userSalt, accountId) {
  const payload = concat(USER_DOMAIN, new Uint8Array([0]), userSalt, accountIdBytes(accountId));
  return sha256(payload);
}

/** H(0x00 ‖ user_tag ‖ u32be(piece) ‖ enc(vector)). */
export async function leafHash(tag, piece, vector) {
  return sha256(concat(new Uint8Array([0]), tag, u32be(piece), enc(vector)));
}

/** H(0x01 ‖ h_left ‖ enc(b_left) ‖ h_right ‖ enc(b_right)). */
export async function nodeHash(hLeft, bLeft, hRight, bRight) {
  return sha256(concat(new Uint8Array([1]), hLeft, enc(bLeft), hRight, enc(bRight)));
}

// ---------------------------------------------------------------------------------------------
// Reading a proof (throws ProofError at the first problem, as the Python reader does)

function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asDict(value, where) {
  if (!isObject(value)) throw new ProofError(N_('%(where)s: expected an object', { where }));
  return value;
}

function asList(value, where) {
  if (!Array.isArray(value)) throw new ProofError(N_('%(where)s: expected a list', { where }));
  return value;
}

function asStr(value, where) {
  if (typeof value !== 'string') throw new ProofError(N_('%(where)s: expected a string', { where }));
  return value;
}

function asInt(value, where) {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new ProofError(N_('%(where)s: expected an integer', { where }));
  }
  return value;
}

function has(obj, key) {
  return Object.prototype.hasOwnProperty.call(obj, key);
}

function field(obj, key, where) {
  if (!has(obj, key)) throw new ProofError(N_('%(where)s: missing', { where: `${where}.${key}` }));
  return obj[key];
}

function lowerHex(text, where, chars) {
  if (!LOWER_HEX.test(text) || text.length !== chars) {
    throw new ProofError(N_('%(where)s: expected %(count)s lowercase hex characters', { where, count: chars }));
  }
  return text;
}

function parseHash(value, where) {
  return fromHex(lowerHex(asStr(value, where), where, 2 * HASH_BYTES));
}

function parseAssets(value) {
  const items = asList(value, 'assets');
  if (items.length < 1 || items.length > MAX_ASSETS) {
    throw new ProofError(N_('%(where)s: expected 1..%(max)s assets', { where: 'assets', max: MAX_ASSETS }));
  }
  const assets = [];
  items.forEach((item, position) => {
    const where = `assets[${position}]`;
    const entry = asDict(item, where);
    const code = asStr(field(entry, 'code', where), `${where}.code`);
    const scale = asInt(field(entry, 'scale', where), `${where}.scale`);
    if (!ASSET_CODE.test(code)) {
      throw new ProofError(
        N_("%(where)s: '%(code)s' is not an asset code", { where: `${where}.code`, code: code.slice(0, 40) }),
      );
    }
    if (scale < 0 || scale > MAX_SCALE) {
      throw new ProofError(N_('%(where)s: expected 0..%(max)s', { where: `${where}.scale`, max: MAX_SCALE }));
    }
    if (assets.length && code <= assets[assets.length - 1].code) {
      throw new ProofError(
        N_('%(where)s: assets must be sorted by code, without repeats', { where: `${where}.code` }),
      );
    }
    assets.push({ code, scale });
  });
  return assets;
}

function parseVector(value, assets, where) {
  const amounts = asDict(value, where);
  const codes = new Set(assets.map((asset) => asset.code));
  const unknown = Object.keys(amounts).filter((key) => !codes.has(key)).sort();
  if (unknown.length) {
    throw new ProofError(
      N_("%(where)s: '%(code)s' is not one of the audit's assets", { where, code: unknown[0].slice(0, 40) }),
    );
  }
  return assets.map((asset) => {
    const text = asStr(field(amounts, asset.code, where), `${where}.${asset.code}`);
    try {
      return parseAmount(text, asset.scale);
    } catch (error) {
      throw new ProofError(N_('%(where)s: %(problem)s', { where: `${where}.${asset.code}`, problem: detailOf(error) }));
    }
  });
}

function parseHeight(proof) {
  const leafCount = asInt(field(proof, 'leaf_count', 'proof'), 'leaf_count');
  const count = BigInt(leafCount);
  const isPowerOfTwo = count >= 2n && (count & (count - 1n)) === 0n;
  if (!isPowerOfTwo || count > 1n << BigInt(MAX_HEIGHT)) {
    throw new ProofError(
      N_('leaf_count: %(count)s is not a power of two in 2..2^%(max)s', { count: leafCount, max: MAX_HEIGHT }),
    );
  }
  const height = count.toString(2).length - 1;
  if (has(proof, 'height') && asInt(proof.height, 'height') !== height) {
    throw new ProofError(
      N_('height: %(given)s is not log2(leaf_count) = %(height)s', { given: proof.height, height }),
    );
  }
  return { leafCount, height };
}

function parseLeaf(value, position, count, assets) {
  const where = `leaves[${position}]`;
  const entry = asDict(value, where);
  const index = asInt(field(entry, 'index', where), `${where}.index`);
  const piece = asInt(field(entry, 'piece', where), `${where}.piece`);
  if (index < 0) throw new ProofError(N_('%(where)s: must not be negative', { where: `${where}.index` }));
  if (piece < 0 || piece >= MAX_PIECES) {
    throw new ProofError(N_('%(where)s: expected 0..%(max)s', { where: `${where}.piece`, max: MAX_PIECES - 1 }));
  }
  const vector = parseVector(field(entry, 'balances', where), assets, `${where}.balances`);
  const steps = asList(field(entry, 'path', where), `${where}.path`);
  if (steps.length > MAX_HEIGHT) {
    throw new ProofError(N_('%(where)s: more than %(max)s steps', { where: `${where}.path`, max: MAX_HEIGHT }));
  }
  const path = steps.map((step, number) => {
    const stepWhere = `${where}.path[${number}]`;
    const stepEntry = asDict(step, stepWhere);
    const hash = parseHash(field(stepEntry, 'hash', stepWhere), `${stepWhere}.hash`);
    const balances = field(stepEntry, 'balances', stepWhere);
    return { hash, vector: parseVector(balances, assets, `${stepWhere}.balances`) };
  });
  const number = { number: position + 1, count };
  const name = N_('Leaf %(number)s of %(count)s', number);
  const lowerName = N_('leaf %(number)s of %(count)s', number); // in the middle of a sentence
  return { name, lowerName, index, piece, vector, path };
}

function parseIdentity(proof) {
  const accountId = asStr(field(proof, 'account_id', 'proof'), 'account_id');
  try {
    accountIdBytes(accountId);
  } catch (error) {
    throw new ProofError(N_('%(where)s: %(problem)s', { where: 'account_id', problem: detailOf(error) }));
  }
  const saltText = asStr(field(proof, 'user_salt', 'proof'), 'user_salt');
  return { accountId, userSalt: fromHex(lowerHex(saltText, 'user_salt', 2 * SALT_BYTES)) };
}

/** The proof's fields, checked and typed; throws ProofError. */
export function parseProof(obj) {
  const proof = asDict(obj, 'proof');
  if (field(proof, 'format', 'proof') !== FORMAT) {
    throw new ProofError(N_("%(where)s: expected '%(format)s'", { where: 'format', format: FORMAT }));
  }
  const auditId = asStr(field(proof, 'audit_id', 'proof'), 'audit_id');
  const assets = parseAssets(field(proof, 'assets', 'proof'));
  const { leafCount, height } = parseHeight(proof);
  const { accountId, userSalt } = parseIdentity(proof);
  const leaves = asList(field(proof, 'leaves', 'proof'), 'leaves');
  if (leaves.length < 1 || leaves.length > MAX_PIECES) {
    throw new ProofError(N_('%(where)s: expected 1..%(max)s pieces', { where: 'leaves', max: MAX_PIECES }));
  }
  return {
    auditId,
    assets,
    root: parseHash(field(proof, 'root', 'proof'), 'root'),
    totals: parseVector(field(proof, 'totals', 'proof'), assets, 'totals'),
    leafCount,
    height,
    accountId,
    userSalt,
    balances: parseVector(field(proof, 'balances', 'proof'), assets, 'balances'),
    leaves: leaves.map((leaf, n) => parseLeaf(leaf, n, leaves.length, assets)),
  };
}

// ---------------------------------------------------------------------------------------------
// Verifying it

/** Collects checks (as the Python Report does) and the steps shown to the user, in order.
 * A check's and a step's `message` is an N_ message; `text` is its English. */
class Report {
  constructor() {
    this.checks = [];
    this.steps = [];
    this.failuresByName = new Map();
  }

  info(message) {
    this.steps.push({ status: 'info', check: null, text: message.text, message });
  }

  check(name, ok, failure, success) {
    if (ok) {
      const message = success || N_('%(check)s: ok', { check: name });
      this.checks.push({ name, ok: true, text: message.text, message });
      this.steps.push({ status: 'ok', check: name, text: message.text, message });
      return true;
    }
    const count = (this.failuresByName.get(name) || 0) + 1;
    this.failuresByName.set(name, count);
    if (count <= MAX_FAILURES_PER_CHECK) {
      this.checks.push({ name, ok: false, text: failure.text, message: failure });
      this.steps.push({ status: 'fail', check: name, text: failure.text, message: failure });
    }
    return false;
  }

  fail(name, message) {
    this.check(name, false, message);
  }

  result(extra) {
    const checks = [...this.checks];
    for (const [name, count] of this.failuresByName) {
      if (count > MAX_FAILURES_PER_CHECK) {
        const message = N_('%(check)s: %(count)s more failures not shown', {
          check: name,
          count: count - MAX_FAILURES_PER_CHECK,
        });
        checks.push({ name, ok: false, text: message.text, message });
        this.steps.push({ status: 'fail', check: name, text: message.text, message });
      }
    }
    const valid = checks.length > 0 && checks.every((check) => check.ok);
    return { format: FORMAT, valid, checks, steps: this.steps, ...extra };
  }
}

function short(bytes) {
  return `${toHex(bytes).slice(0, 16)}…`;
}

function formatted(assets, vector) {
  const out = {};
  assets.forEach((asset, i) => {
    out[asset.code] = formatAmount(vector[i], asset.scale);
  });
  return out;
}

/**
 * Verify a strongroom-por-v1 user proof (a parsed JSON object). Resolves to
 * {valid, checks: [{name, ok, text, message}], steps: [{status: 'ok'|'fail'|'info', check, text,
 *  message}] (message: N_, text: its English),
 *  auditId, accountId, root, balances, totals} (the last five are null when unreadable).
 */
export async function verifyProof(obj) {
  const report = new Report();
  let proof = null;
  try {
    proof = parseProof(obj);
    report.info(
      N_('Read the proof: audit %(audit)s, %(pieces)s piece(s), %(leaves)s leaves, tree height %(height)s', {
        audit: proof.auditId,
        pieces: proof.leaves.length,
        leaves: proof.leafCount,
        height: proof.height,
      }),
    );
    await verifyParsed(proof, report);
  } catch (error) {
    if (!(error instanceof ProofError)) throw error;
    report.fail('structure', N_('The proof is malformed: %(problem)s', { problem: error.detail }));
    proof = null;
  }
  return report.result({
    auditId: proof ? proof.auditId : null,
    accountId: proof ? proof.accountId : null,
    root: proof ? toHex(proof.root) : null,
    balances: proof ? formatted(proof.assets, proof.balances) : null,
    totals: proof ? formatted(proof.assets, proof.totals) : null,
  });
}

async function verifyParsed(proof, report) {
  const tag = await userTag(proof.userSalt, proof.accountId);
  report.info(
    N_('Your tag, from user_salt and account id %(account)s: %(tag)s', { account: proof.accountId, tag: short(tag) }),
  );
  checkPieces(proof, report);
  const folded = [];
  for (const leaf of proof.leaves) {
    const result = await foldLeaf(proof, tag, leaf, report);
    if (result !== null) folded.push(result);
  }
  checkSharedNodes(folded, report);
}

function checkPieces(proof, report) {
  const pieces = proof.leaves.map((leaf) => leaf.piece);
  const indices = proof.leaves.map((leaf) => leaf.index);
  report.check(
    'pieces',
    new Set(pieces).size === pieces.length,
    N_('Piece numbers repeat: %(pieces)s', { pieces: pieces.join(', ') }),
    N_('%(count)s piece(s), numbers distinct', { count: pieces.length }),
  );
  report.check(
    'leaf indices',
    new Set(indices).size === indices.length,
    N_('Leaf indices repeat: %(indices)s', { indices: indices.join(', ') }),
    N_('Leaf indices distinct'),
  );
  proof.assets.forEach((asset, position) => {
    const sum = proof.leaves.reduce((total, leaf) => total + leaf.vector[position], 0n);
    const claimed = proof.balances[position];
    report.check(
      'pieces add up',
      sum === claimed,
      N_('Pieces do not add up to your %(asset)s balance: they sum to %(sum)s, the balance says %(balance)s', {
        asset: asset.code,
        sum: formatAny(sum, asset.scale),
        balance: amountParam(formatAmount(claimed, asset.scale)),
      }),
      N_('Pieces add up to your %(asset)s balance %(balance)s', {
        asset: asset.code,
        balance: amountParam(formatAmount(claimed, asset.scale)),
      }),
    );
  });
}

function bit(index, level) {
  return Math.floor(index / 2 ** level) % 2; // index < 2^48: exact in a double
}

async function foldLeaf(proof, tag, leaf, report) {
  const where = { leaf: leaf.name, index: leaf.index, piece: leaf.piece, count: proof.leafCount };
  if (!report.check(
    'leaf index',
    leaf.index < proof.leafCount,
    N_('%(leaf)s (index %(index)s, piece %(piece)s): index is not below leaf_count %(count)s', where),
    N_('%(leaf)s (index %(index)s, piece %(piece)s): index below leaf_count %(count)s', where),
  )) return null;
  if (!report.check(
    'path length',
    leaf.path.length === proof.height,
    N_("%(leaf)s: path has %(steps)s steps, the tree's height is %(height)s", {
      leaf: leaf.name,
      steps: leaf.path.length,
      height: proof.height,
    }),
    N_("%(leaf)s: path has %(height)s steps, the tree's height", { leaf: leaf.name, height: proof.height }),
  )) return null;
  const own = await leafHash(tag, leaf.piece, leaf.vector);
  report.info(
    N_('%(leaf)s: leaf hash %(hash)s from your tag, piece %(piece)s and its balances', {
      leaf: leaf.name,
      hash: short(own),
      piece: leaf.piece,
    }),
  );
  const nodes = [{ hash: own, vector: leaf.vector }];
  for (let number = 0; number < leaf.path.length; number += 1) {
    const step = leaf.path[number];
    const { hash, vector } = nodes[nodes.length - 1];
    const sum = vector.map((amount, i) => amount + step.vector[i]);
    const over = proof.assets.findIndex((_, i) => sum[i] > U128_MAX);
    if (over >= 0) {
      report.fail(
        'balance overflow',
        N_('%(leaf)s, path step %(step)s: the sum for %(asset)s exceeds 2^128-1', {
          leaf: leaf.name,
          step: number + 1,
          asset: proof.assets[over].code,
        }),
      );
      return null;
    }
    const right = bit(leaf.index, number) === 0; // we are the left child: the sibling is on the right
    const parent = right
      ? await nodeHash(hash, vector, step.hash, step.vector)
      : await nodeHash(step.hash, step.vector, hash, vector);
    const shown = {
      leaf: leaf.name,
      step: number + 1,
      steps: leaf.path.length,
      sibling: short(step.hash),
      node: short(parent),
    };
    report.info(
      right
        ? N_('%(leaf)s, path step %(step)s of %(steps)s: sibling %(sibling)s on the right → node %(node)s', shown)
        : N_('%(leaf)s, path step %(step)s of %(steps)s: sibling %(sibling)s on the left → node %(node)s', shown),
    );
    nodes.push({ hash: parent, vector: sum });
  }
  checkRoot(proof, leaf, nodes[nodes.length - 1], report);
  return { leaf, nodes };
}

function checkRoot(proof, leaf, top, report) {
  report.check(
    'root',
    sameBytes(top.hash, proof.root),
    N_('%(leaf)s: root mismatch: computed %(computed)s, the proof says %(root)s', {
      leaf: leaf.name,
      computed: toHex(top.hash),
      root: toHex(proof.root),
    }),
    N_('%(leaf)s: root matches %(root)s', { leaf: leaf.name, root: short(proof.root) }),
  );
  proof.assets.forEach((asset, i) => {
    report.check(
      'totals',
      top.vector[i] === proof.totals[i],
      N_('%(leaf)s: totals mismatch for %(asset)s: computed %(computed)s, the proof says %(total)s', {
        leaf: leaf.name,
        asset: asset.code,
        computed: amountParam(formatAmount(top.vector[i], asset.scale)),
        total: amountParam(formatAmount(proof.totals[i], asset.scale)),
      }),
      N_('%(leaf)s: total for %(asset)s matches %(total)s', {
        leaf: leaf.name,
        asset: asset.code,
        total: amountParam(formatAmount(proof.totals[i], asset.scale)),
      }),
    );
  });
}

function sameStep(a, b) {
  return sameBytes(a.hash, b.hash) && sameVector(a.vector, b.vector);
}

/** Two pieces of one user share their path above the level where their subtrees meet: there
 * each must see the other's own node as its sibling. This names the step a tampered path breaks. */
function checkSharedNodes(folded, report) {
  folded.forEach((first, firstPosition) => {
    for (const second of folded.slice(firstPosition + 1)) {
      if (first.leaf.index === second.leaf.index) continue;
      const meet = (BigInt(first.leaf.index) ^ BigInt(second.leaf.index)).toString(2).length - 1;
      for (const [one, other] of [[first, second], [second, first]]) {
        report.check(
          'shared nodes',
          sameStep(one.leaf.path[meet], other.nodes[meet]),
          N_("%(leaf)s, path step %(step)s: hash mismatch: the sibling is not %(other)s's node", {
            leaf: one.leaf.name,
            step: meet + 1,
            other: other.leaf.lowerName,
          }),
          N_("%(leaf)s, path step %(step)s: the sibling is %(other)s's node", {
            leaf: one.leaf.name,
            step: meet + 1,
            other: other.leaf.lowerName,
          }),
        );
      }
      for (let number = meet + 1; number < first.leaf.path.length; number += 1) {
        report.check(
          'shared nodes',
          sameStep(first.leaf.path[number], second.leaf.path[number]),
          N_("%(leaf)s, path step %(step)s: hash mismatch: the sibling differs from %(other)s's", {
            leaf: second.leaf.name,
            step: number + 1,
            other: first.leaf.lowerName,
          }),
          N_('%(leaf)s, path step %(step)s: same sibling as %(other)s', {
            leaf: second.leaf.name,
            step: number + 1,
            other: first.leaf.lowerName,
          }),
        );
      }
    }
  });
}

/** What a failed check means, for the verdict line ("Invalid: root mismatch"). */
export const CHECK_LABELS = {
  structure: N_('malformed proof'),
  pieces: N_('piece numbers repeat'),
  'leaf indices': N_('leaf indices repeat'),
  'pieces add up': N_('pieces do not add up to the balance'),
  'leaf index': N_('leaf index out of range'),
  'path length': N_('path length is not the tree height'),
  'balance overflow': N_('balance overflow'),
  root: N_('root mismatch'),
  totals: N_('totals mismatch'),
  'shared nodes': N_('path hash mismatch'),
  'published root': N_('not the published root'),
  'published totals': N_('not the published totals'),
};
