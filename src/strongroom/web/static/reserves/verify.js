// The verify page (/reserves/verify): fetch my proof or read a dropped file, verify it here with
// por_v1.js, compare its root with the published one, and show every step.
//
// Signing in happens in the Lite app (its session cookie is HttpOnly: this script never sees
// it). "Verify now" asks the page's own server, with the CSRF token, for a proof-only token
// (POST /reserves/proof-token): it reads this user's proof of this audit for a few minutes and
// nothing else (/v1/me, balances, transfers refuse it). It lives in a variable for one fetch and
// is never stored (no sessionStorage, no localStorage).
//
// Languages: every message is marked N_('msgid', {params}) (here and in por_v1.js; the
// `reserves` catalog domain). The page renders the translations of those msgids, and the
// locale's number symbols, into <script type="application/json" id="reserves-i18n"> (data, not
// run, so the CSP allows it); `say()` fills a message's placeholders from them.

import { CHECK_LABELS, MAX_PROOF_BYTES, N_, amountParam, fill, verifyProof } from './por_v1.js';

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Messages in the page's language

const I18N = readI18n();

function readI18n() {
  const block = document.getElementById('reserves-i18n');
  const fallback = { messages: {}, group: ',', decimal: '.', grouping: [3, 3], separator: ', ' };
  if (!block) return fallback;
  return { ...fallback, ...JSON.parse(block.textContent) };
}

function isMessage(value) {
  return typeof value === 'object' && value !== null && typeof value.key === 'string';
}

/** A message (or plain text) in the page's language, placeholders filled; the English msgid
 * where a translation is missing. */
function say(message) {
  if (!isMessage(message)) return String(message);
  const template = Object.prototype.hasOwnProperty.call(I18N.messages, message.key)
    ? I18N.messages[message.key]
    : message.key;
  return fill(template, message.params || {}, shown);
}

function shown(value) {
  if (isMessage(value)) return say(value);
  if (typeof value === 'object' && value !== null && typeof value.amount === 'string') {
    return localAmount(value.amount);
  }
  return String(value);
}

/** "1234567.89" → "1,234,567.89" with the locale's symbols and grouping: digits only, so the
 * amount stays exact (no Number, no rounding). */
function localAmount(text) {
  const match = /^(-?)([0-9]+)(?:\.([0-9]+))?$/.exec(text);
  if (match === null) return text;
  const [, sign, whole, fraction] = match;
  const [primary, secondary] = I18N.grouping;
  const groups = [];
  let rest = whole;
  if (rest.length > primary) {
    groups.unshift(rest.slice(-primary));
    rest = rest.slice(0, -primary);
    while (rest.length > secondary) {
      groups.unshift(rest.slice(-secondary));
      rest = rest.slice(0, -secondary);
    }
  }
  groups.unshift(rest);
  return `${sign}${groups.join(I18N.group)}${fraction === undefined ? '' : I18N.decimal + fraction}`;
}

/** The reasons the API gives that this page can say in the page's language (by error code). */
const API_ERRORS = {
  not_in_audit: N_('your account is not in audit %(audit)s'),
  audit_not_found: N_('audit %(audit)s is not published on this server'),
  rate_limited: N_('Too many requests: wait a moment and try again.'),
};

const SESSION_ENDED = N_('Your session has ended: please sign in again.');

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Why the API refused: in the page's language for the codes of API_ERRORS (`params` fill
 * their placeholders), else the API's own (English) message, else the status. */
async function errorMessage(response, params = {}) {
  try {
    const body = await response.json();
    if (body && body.error) {
      if (Object.prototype.hasOwnProperty.call(API_ERRORS, body.error.code)) {
        return N_(API_ERRORS[body.error.code].key, params);
      }
      if (body.error.message) return body.error.message;
    }
  } catch (_) {
    // not JSON: fall through
  }
  return N_('the server answered %(status)s', { status: response.status });
}

// ---------------------------------------------------------------------------------------------
// A proof-only token from the signed-in page

function csrfToken() {
  const headers = document.body.getAttribute('hx-headers');
  return headers ? JSON.parse(headers)['X-CSRF-Token'] : '';
}

function showFetchError(message) {
  const box = $('fetch-error');
  box.textContent = message ? say(message) : '';
  box.hidden = !message;
}

/** A token that reads only this user's proof of `auditId`, for a few minutes; null (and the
 * reason shown) when the browser is not signed in any more or the server refused. */
async function proofToken(auditId) {
  const response = await fetch('/reserves/proof-token', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'X-CSRF-Token': csrfToken(), 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ audit_id: auditId }),
  });
  if (response.status === 401 || response.status === 403) {
    showFetchError(SESSION_ENDED);
    showProblem(N_('Sign in again to fetch your proof.'));
    return null;
  }
  if (!response.ok) {
    const reason = await errorMessage(response, { audit: auditId });
    showProblem(N_('No proof: %(reason)s', { reason }));
    return null;
  }
  return (await response.json()).token;
}

// ---------------------------------------------------------------------------------------------
// Getting a proof

async function verifyNow() {
  const auditId = $('audit-id').value;
  showFetchError('');
  showBusy(N_('Fetching your proof for audit %(audit)s…', { audit: auditId }));
  let response;
  try {
    const proofOnly = await proofToken(auditId);
    if (proofOnly === null) return;
    response = await fetch(`/v1/reserves/${encodeURIComponent(auditId)}/proof`, {
      headers: { Authorization: `Bearer ${proofOnly}` },
    });
  } catch (error) {
    showProblem(N_('Could not fetch your proof: %(reason)s', { reason: error.message }));
    return;
  }
  if (response.status === 401) {
    showFetchError(SESSION_ENDED);
    showProblem(N_('Sign in again to fetch your proof.'));
    return;
  }
  if (!response.ok) {
    const reason = await errorMessage(response, { audit: auditId });
    showProblem(N_('No proof: %(reason)s', { reason }));
    return;
  }
  const text = await response.text();
  await verifyText(text, `proof-${auditId}.json`);
}

async function verifyFile(file) {
  if (!file) return;
  if (file.size > MAX_PROOF_BYTES) {
    showProblem(
      N_('%(file)s is %(size)s bytes: a proof is at most %(max)s bytes', {
        file: file.name,
        size: amountParam(String(file.size)),
        max: amountParam(String(MAX_PROOF_BYTES)),
      }),
    );
    return;
  }
  showBusy(N_('Reading %(file)s…', { file: file.name }));
  await verifyText(await file.text(), null);
}

async function verifyText(text, downloadName) {
  let proof;
  try {
    proof = JSON.parse(text);
  } catch (error) {
    const message = N_('The file is not JSON: %(reason)s', { reason: error.message });
    const check = { name: 'structure', ok: false, text: message.text, message };
    const step = { status: 'fail', check: 'structure', text: message.text, message };
    showOutcome({ valid: false, checks: [check], steps: [step] }, null, null);
    return;
  }
  let result;
  try {
    result = await verifyProof(proof);
  } catch (error) {
    showProblem(
      N_('The proof could not be checked: %(reason)s', { reason: error.detail || error.message }),
    );
    return;
  }
  const published = result.auditId === null ? null : await comparePublished(result);
  showOutcome(result, published, downloadName === null ? null : { text, name: downloadName });
}

/** Compare the proof's root and totals with what this server published for its audit. Returns
 * {state: 'match'|'mismatch'|'unknown', message, checks} (messages: N_). */
async function comparePublished(result) {
  let response;
  try {
    response = await fetch(`/v1/reserves/${encodeURIComponent(result.auditId)}`);
  } catch (error) {
    return {
      state: 'unknown',
      message: N_('Could not fetch the published root: %(reason)s', { reason: error.message }),
    };
  }
  if (response.status === 404) {
    return {
      state: 'unknown',
      message: N_('Audit %(audit)s is not published on this server: the root was not compared', {
        audit: result.auditId,
      }),
    };
  }
  if (!response.ok) {
    return {
      state: 'unknown',
      message: N_('Could not fetch the published root: %(reason)s', {
        reason: await errorMessage(response, { audit: result.auditId }),
      }),
    };
  }
  const audit = await response.json();
  const rootOk = audit.root === result.root;
  const totalsOk =
    Object.keys(audit.totals).length === Object.keys(result.totals).length &&
    Object.entries(audit.totals).every(([code, amount]) => result.totals[code] === amount);
  const roots = { audit: audit.audit_id, root: `${result.root.slice(0, 16)}…`, published: `${audit.root.slice(0, 16)}…` };
  const checks = [
    {
      name: 'published root',
      ok: rootOk,
      message: rootOk
        ? N_('Root matches the root published for audit %(audit)s', roots)
        : N_("The proof's root %(root)s is not the published root %(published)s", roots),
    },
    {
      name: 'published totals',
      ok: totalsOk,
      message: totalsOk
        ? N_('Totals match the published liabilities')
        : N_("The proof's totals are not the published liabilities"),
    },
  ];
  const ok = rootOk && totalsOk;
  return {
    state: ok ? 'match' : 'mismatch',
    message: ok
      ? N_('Published root for audit %(audit)s: matches', roots)
      : N_('Published root for audit %(audit)s: does NOT match this proof', roots),
    checks,
  };
}

// ---------------------------------------------------------------------------------------------
// Showing the result

function resetResult() {
  $('result').hidden = false;
  $('steps').replaceChildren();
  $('summary').replaceChildren();
  $('published').textContent = '';
  $('published').className = 'published';
  const download = $('download');
  if (download.href) URL.revokeObjectURL(download.href);
  download.removeAttribute('href');
  download.hidden = true;
}

function showBusy(message) {
  resetResult();
  const verdict = $('verdict');
  verdict.className = 'verdict busy';
  verdict.textContent = say(message);
}

function showProblem(message) {
  resetResult();
  const verdict = $('verdict');
  verdict.className = 'verdict problem';
  verdict.textContent = say(message);
}

function verdictText(result, published) {
  const failed = [...result.checks, ...(published && published.checks ? published.checks : [])]
    .filter((check) => !check.ok)
    .map((check) => (CHECK_LABELS[check.name] ? say(CHECK_LABELS[check.name]) : check.name));
  if (failed.length) {
    const reasons = [...new Set(failed)].join(I18N.separator);
    return { ok: false, text: say(N_('Invalid: %(reasons)s', { reasons })) };
  }
  if (!result.valid) return { ok: false, text: say(N_('Invalid')) };
  if (!published || published.state !== 'match') {
    return { ok: true, text: say(N_('Valid (not compared with a published root)')) };
  }
  return { ok: true, text: say(N_('Valid')) };
}

function showOutcome(result, published, download) {
  resetResult();
  const verdict = verdictText(result, published);
  const line = $('verdict');
  line.className = `verdict ${verdict.ok ? 'valid' : 'invalid'}`;
  line.textContent = verdict.text;
  if (published) {
    const status = { match: 'ok', mismatch: 'fail', unknown: 'warn' }[published.state];
    $('published').className = `published ${status}`;
    $('published').textContent = say(published.message);
  }
  showSummary(result);
  const steps = [...result.steps];
  if (published && published.checks) {
    for (const check of published.checks) {
      steps.push({ status: check.ok ? 'ok' : 'fail', check: check.name, message: check.message });
    }
  }
  const list = $('steps');
  for (const step of steps) {
    const item = element('li', `step ${step.status}`);
    const mark = { ok: '✓', fail: '✗', info: '·' }[step.status];
    item.append(element('span', 'mark', mark), element('span', 'text', say(step.message)));
    if (step.check) item.dataset.check = step.check;
    list.append(item);
  }
  if (download) {
    const link = $('download');
    link.href = URL.createObjectURL(new Blob([download.text], { type: 'application/json' }));
    link.download = download.name;
    link.hidden = false;
  }
  $('result').scrollIntoView({ behavior: 'smooth', block: 'start' });
}

function showSummary(result) {
  if (result.auditId === null || result.auditId === undefined) return;
  const summary = $('summary');
  const add = (label, value, className) => {
    const row = element('div', className);
    row.append(element('dt', '', label));
    const dd = element('dd');
    dd.append(element(className === 'wide' ? 'code' : 'span', className === 'wide' ? 'hash' : '', value));
    row.append(dd);
    summary.append(row);
  };
  add(say(N_('Audit')), result.auditId);
  add(say(N_('Account')), result.accountId);
  for (const [code, amount] of Object.entries(result.balances)) {
    add(say(N_('Your %(asset)s', { asset: code })), localAmount(amount));
  }
  add(say(N_('Root')), result.root, 'wide');
}

// ---------------------------------------------------------------------------------------------
// Wiring

function wireDropZone() {
  const zone = $('drop-zone');
  const input = $('proof-file');
  input.addEventListener('change', () => {
    verifyFile(input.files[0]);
    input.value = '';
  });
  for (const name of ['dragenter', 'dragover']) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add('dragging');
    });
  }
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    const files = event.dataTransfer ? event.dataTransfer.files : null;
    if (files && files.length) verifyFile(files[0]);
  });
  // A file dropped next to the zone must not make the browser navigate away to it.
  for (const name of ['dragover', 'drop']) window.addEventListener(name, (event) => event.preventDefault());
}

function start() {
  const button = $('verify-now');
  if (button && $('signed-in')) button.addEventListener('click', verifyNow);
  wireDropZone();
  document.body.dataset.ready = 'true';
}

start();
