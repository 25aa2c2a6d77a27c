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

/** The file does not have the shape the format requires; the message says where. */
export class ProofError extends Error {}

// ---------------------------------------------------------------------------------------------
// Primitives

/** "12.5" with scale 8 → 1250000000n. Throws (saying why) for a sign, an exponent, whitespace,
 * more decimals than the scale, or a value over 2^128−1. */
export function parseAmount(text, scale) {
  if (typeof text !== 'string') throw new Error('amount must be a string');
  if (!Number.isInteger(scale) || scale < 0 || scale > MAX_SCALE) {
    throw new Error(`scale must be 0..${MAX_SCALE}`);
  }
  const match = text.length <= MAX_AMOUNT_CHARS ? AMOUNT.exec(text) : null;
  if (match === null) throw new Error(amountProblem(text));
  const whole = match[1];
  const fraction = match[2] || '';
  if (fraction.length > scale) {
    throw new Error(`'${text}' has more decimals than the scale ${scale}`);
  }
  const amount = BigInt(whole) * 10n ** BigInt(scale) + BigInt(fraction.padEnd(scale, '0') || '0');
  if (amount > U128_MAX) throw new Error(`'${text}' is over 2^128-1 minor units`);
  return amount;
}

function amountProblem(text) {
  const shown = `'${text.slice(0, MAX_AMOUNT_CHARS)}'`;
  if (text.length > MAX_AMOUNT_CHARS) return `${shown}... is too long`;
  if (text !== '' && (text[0] === '+' || text[0] === '-')) return `${shown} has a sign`;
  if (/\s/.test(text)) return `${shown} contains whitespace`;
  if (/e/i.test(text)) return `${shown} has an exponent`;
  return `${shown} is not a plain decimal amount`;
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
  return amount <= U128_MAX ? formatAmount(amount, scale) : `${amount} minor units`;
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
    throw new Error('Web Crypto is not available: open this page over HTTPS');
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
  if (hasLoneSurrogate(accountId)) throw new Error('account_id is not valid Unicode');
  const encoded = UTF8.encode(accountId);
  if (encoded.length < 1 || encoded.length > MAX_ACCOUNT_ID_BYTES) {
    throw new Error(`account_id must be 1..${MAX_ACCOUNT_ID_BYTES} UTF-8 bytes`);
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
  if (!isObject(value)) throw new ProofError(`${where}: expected an object`);
  return value;
}

function asList(value, where) {
  if (!Array.isArray(value)) throw new ProofError(`${where}: expected a list`);
  return value;
}

function asStr(value, where) {
  if (typeof value !== 'string') throw new ProofError(`${where}: expected a string`);
  return value;
}

function asInt(value, where) {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new ProofError(`${where}: expected an integer`);
  }
  return value;
}

function has(obj, key) {
  return Object.prototype.hasOwnProperty.call(obj, key);
}

function field(obj, key, where) {
  if (!has(obj, key)) throw new ProofError(`${where}.${key}: missing`);
  return obj[key];
}

function lowerHex(text, where, chars) {
  if (!LOWER_HEX.test(text) || text.length !== chars) {
    throw new ProofError(`${where}: expected ${chars} lowercase hex characters`);
  }
  return text;
}

function parseHash(value, where) {
  return fromHex(lowerHex(asStr(value, where), where, 2 * HASH_BYTES));
}

function parseAssets(value) {
  const items = asList(value, 'assets');
  if (items.length < 1 || items.length > MAX_ASSETS) {
    throw new ProofError(`assets: expected 1..${MAX_ASSETS} assets`);
  }
  const assets = [];
  items.forEach((item, position) => {
    const where = `assets[${position}]`;
    const entry = asDict(item, where);
    const code = asStr(field(entry, 'code', where), `${where}.code`);
    const scale = asInt(field(entry, 'scale', where), `${where}.scale`);
    if (!ASSET_CODE.test(code)) {
      throw new ProofError(`${where}.code: '${code.slice(0, 40)}' is not an asset code`);
    }
    if (scale < 0 || scale > MAX_SCALE) throw new ProofError(`${where}.scale: expected 0..${MAX_SCALE}`);
    if (assets.length && code <= assets[assets.length - 1].code) {
      throw new ProofError(`${where}.code: assets must be sorted by code, without repeats`);
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
    throw new ProofError(`${where}: '${unknown[0].slice(0, 40)}' is not one of the audit's assets`);
  }
  return assets.map((asset) => {
    const text = asStr(field(amounts, asset.code, where), `${where}.${asset.code}`);
    try {
      return parseAmount(text, asset.scale);
    } catch (error) {
      throw new ProofError(`${where}.${asset.code}: ${error.message}`);
    }
  });
}

function parseHeight(proof) {
  const leafCount = asInt(field(proof, 'leaf_count', 'proof'), 'leaf_count');
  const count = BigInt(leafCount);
  const isPowerOfTwo = count >= 2n && (count & (count - 1n)) === 0n;
  if (!isPowerOfTwo || count > 1n << BigInt(MAX_HEIGHT)) {
    throw new ProofError(`leaf_count: ${leafCount} is not a power of two in 2..2^${MAX_HEIGHT}`);
  }
  const height = count.toString(2).length - 1;
  if (has(proof, 'height') && asInt(proof.height, 'height') !== height) {
    throw new ProofError(`height: ${proof.height} is not log2(leaf_count) = ${height}`);
  }
  return { leafCount, height };
}

function parseLeaf(value, position, count, assets) {
  const where = `leaves[${position}]`;
  const entry = asDict(value, where);
  const index = asInt(field(entry, 'index', where), `${where}.index`);
  const piece = asInt(field(entry, 'piece', where), `${where}.piece`);
  if (index < 0) throw new ProofError(`${where}.index: must not be negative`);
  if (piece < 0 || piece >= MAX_PIECES) throw new ProofError(`${where}.piece: expected 0..${MAX_PIECES - 1}`);
  const vector = parseVector(field(entry, 'balances', where), assets, `${where}.balances`);
  const steps = asList(field(entry, 'path', where), `${where}.path`);
  if (steps.length > MAX_HEIGHT) throw new ProofError(`${where}.path: more than ${MAX_HEIGHT} steps`);
  const path = steps.map((step, number) => {
    const stepWhere = `${where}.path[${number}]`;
    const stepEntry = asDict(step, stepWhere);
    const hash = parseHash(field(stepEntry, 'hash', stepWhere), `${stepWhere}.hash`);
    const balances = field(stepEntry, 'balances', stepWhere);
    return { hash, vector: parseVector(balances, assets, `${stepWhere}.balances`) };
  });
  const name = `Leaf ${position + 1} of ${count}`;
  return { name, index, piece, vector, path };
}

function parseIdentity(proof) {
  const accountId = asStr(field(proof, 'account_id', 'proof'), 'account_id');
  try {
    accountIdBytes(accountId);
  } catch (error) {
    throw new ProofError(`account_id: ${error.message}`);
  }
  const saltText = asStr(field(proof, 'user_salt', 'proof'), 'user_salt');
  return { accountId, userSalt: fromHex(lowerHex(saltText, 'user_salt', 2 * SALT_BYTES)) };
}

/** The proof's fields, checked and typed; throws ProofError. */
export function parseProof(obj) {
  const proof = asDict(obj, 'proof');
  if (field(proof, 'format', 'proof') !== FORMAT) throw new ProofError(`format: expected '${FORMAT}'`);
  const auditId = asStr(field(proof, 'audit_id', 'proof'), 'audit_id');
  const assets = parseAssets(field(proof, 'assets', 'proof'));
  const { leafCount, height } = parseHeight(proof);
  const { accountId, userSalt } = parseIdentity(proof);
  const leaves = asList(field(proof, 'leaves', 'proof'), 'leaves');
  if (leaves.length < 1 || leaves.length > MAX_PIECES) {
    throw new ProofError(`leaves: expected 1..${MAX_PIECES} pieces`);
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

/** Collects checks (as the Python Report does) and the steps shown to the user, in order. */
class Report {
  constructor() {
    this.checks = [];
    this.steps = [];
    this.failuresByName = new Map();
  }

  info(text) {
    this.steps.push({ status: 'info', check: null, text });
  }

  check(name, ok, failure, success) {
    if (ok) {
      const text = success || `${name}: ok`;
      this.checks.push({ name, ok: true, message: text });
      this.steps.push({ status: 'ok', check: name, text });
      return true;
    }
    const count = (this.failuresByName.get(name) || 0) + 1;
    this.failuresByName.set(name, count);
    if (count <= MAX_FAILURES_PER_CHECK) {
      this.checks.push({ name, ok: false, message: failure });
      this.steps.push({ status: 'fail', check: name, text: failure });
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
        const text = `${name}: ${count - MAX_FAILURES_PER_CHECK} more failures not shown`;
        checks.push({ name, ok: false, message: text });
        this.steps.push({ status: 'fail', check: name, text });
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
 * {valid, checks: [{name, ok, message}], steps: [{status: 'ok'|'fail'|'info', check, text}],
 *  auditId, accountId, root, balances, totals} (the last five are null when unreadable).
 */
export async function verifyProof(obj) {
  const report = new Report();
  let proof = null;
  try {
    proof = parseProof(obj);
    report.info(
      `Read the proof: audit ${proof.auditId}, ${proof.leaves.length} piece(s), ` +
        `${proof.leafCount} leaves, tree height ${proof.height}`,
    );
    await verifyParsed(proof, report);
  } catch (error) {
    if (!(error instanceof ProofError)) throw error;
    report.fail('structure', `The proof is malformed: ${error.message}`);
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
  report.info(`Your tag, from user_salt and account id ${proof.accountId}: ${short(tag)}`);
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
    `Piece numbers repeat: ${pieces.join(', ')}`,
    `${pieces.length} piece(s), numbers distinct`,
  );
  report.check(
    'leaf indices',
    new Set(indices).size === indices.length,
    `Leaf indices repeat: ${indices.join(', ')}`,
    'Leaf indices distinct',
  );
  proof.assets.forEach((asset, position) => {
    const sum = proof.leaves.reduce((total, leaf) => total + leaf.vector[position], 0n);
    const claimed = proof.balances[position];
    report.check(
      'pieces add up',
      sum === claimed,
      `Pieces do not add up to your ${asset.code} balance: they sum to ` +
        `${formatAny(sum, asset.scale)}, the balance says ${formatAmount(claimed, asset.scale)}`,
      `Pieces add up to your ${asset.code} balance ${formatAmount(claimed, asset.scale)}`,
    );
  });
}

function bit(index, level) {
  return Math.floor(index / 2 ** level) % 2; // index < 2^48: exact in a double
}

async function foldLeaf(proof, tag, leaf, report) {
  const where = `${leaf.name} (index ${leaf.index}, piece ${leaf.piece})`;
  if (!report.check(
    'leaf index',
    leaf.index < proof.leafCount,
    `${where}: index is not below leaf_count ${proof.leafCount}`,
    `${where}: index below leaf_count ${proof.leafCount}`,
  )) return null;
  if (!report.check(
    'path length',
    leaf.path.length === proof.height,
    `${leaf.name}: path has ${leaf.path.length} steps, the tree's height is ${proof.height}`,
    `${leaf.name}: path has ${proof.height} steps, the tree's height`,
  )) return null;
  const own = await leafHash(tag, leaf.piece, leaf.vector);
  report.info(`${leaf.name}: leaf hash ${short(own)} from your tag, piece ${leaf.piece} and its balances`);
  const nodes = [{ hash: own, vector: leaf.vector }];
  for (let number = 0; number < leaf.path.length; number += 1) {
    const step = leaf.path[number];
    const { hash, vector } = nodes[nodes.length - 1];
    const sum = vector.map((amount, i) => amount + step.vector[i]);
    const over = proof.assets.findIndex((_, i) => sum[i] > U128_MAX);
    if (over >= 0) {
      report.fail(
        'balance overflow',
        `${leaf.name}, path step ${number + 1}: the sum for ${proof.assets[over].code} exceeds 2^128-1`,
      );
      return null;
    }
    const right = bit(leaf.index, number) === 0; // we are the left child: the sibling is on the right
    const parent = right
      ? await nodeHash(hash, vector, step.hash, step.vector)
      : await nodeHash(step.hash, step.vector, hash, vector);
    report.info(
      `${leaf.name}, path step ${number + 1} of ${leaf.path.length}: sibling ${short(step.hash)} ` +
        `on the ${right ? 'right' : 'left'} → node ${short(parent)}`,
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
    `${leaf.name}: root mismatch: computed ${toHex(top.hash)}, the proof says ${toHex(proof.root)}`,
    `${leaf.name}: root matches ${short(proof.root)}`,
  );
  proof.assets.forEach((asset, i) => {
    report.check(
      'totals',
      top.vector[i] === proof.totals[i],
      `${leaf.name}: totals mismatch for ${asset.code}: computed ` +
        `${formatAmount(top.vector[i], asset.scale)}, the proof says ${formatAmount(proof.totals[i], asset.scale)}`,
      `${leaf.name}: total for ${asset.code} matches ${formatAmount(proof.totals[i], asset.scale)}`,
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
          `${one.leaf.name}, path step ${meet + 1}: hash mismatch: the sibling is not ` +
            `${other.leaf.name.toLowerCase()}'s node`,
          `${one.leaf.name}, path step ${meet + 1}: the sibling is ${other.leaf.name.toLowerCase()}'s node`,
        );
      }
      for (let number = meet + 1; number < first.leaf.path.length; number += 1) {
        report.check(
          'shared nodes',
          sameStep(first.leaf.path[number], second.leaf.path[number]),
          `${second.leaf.name}, path step ${number + 1}: hash mismatch: the sibling differs ` +
            `from ${first.leaf.name.toLowerCase()}'s`,
          `${second.leaf.name}, path step ${number + 1}: same sibling as ${first.leaf.name.toLowerCase()}`,
        );
      }
    }
  });
}

/** What a failed check means, for the verdict line ("Invalid: root mismatch"). */
export const CHECK_LABELS = {
  structure: 'malformed proof',
  pieces: 'piece numbers repeat',
  'leaf indices': 'leaf indices repeat',
  'pieces add up': 'pieces do not add up to the balance',
  'leaf index': 'leaf index out of range',
  'path length': 'path length is not the tree height',
  'balance overflow': 'balance overflow',
  root: 'root mismatch',
  totals: 'totals mismatch',
  'shared nodes': 'path hash mismatch',
  'published root': 'not the published root',
  'published totals': 'not the published totals',
};
