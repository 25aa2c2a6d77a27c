// The verify page (/reserves/verify): sign in, fetch my proof or read a dropped file, verify it
// here with por_v1.js, compare its root with the published one, and show every step.
//
// Sign-in is a stopgap until the Lite app's cookie sign-in exists: the bearer token from
// POST /v1/auth/login is kept in sessionStorage ONLY (this tab, gone when it closes; never
// localStorage, never a cookie) and sent only to this origin's /v1 API.

import { CHECK_LABELS, MAX_PROOF_BYTES, verifyProof } from './por_v1.js';

const TOKEN_KEY = 'strongroom.reserves.token';
const EMAIL_KEY = 'strongroom.reserves.email';

const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) {
    // not JSON: fall through
  }
  return `the server answered ${response.status}`;
}

// ---------------------------------------------------------------------------------------------
// Signing in

function showSignedIn() {
  const signedIn = token() !== null;
  $('sign-in').hidden = signedIn;
  $('signed-in').hidden = !signedIn;
  $('signed-in-as').textContent = sessionStorage.getItem(EMAIL_KEY) || '';
  const verifyNow = $('verify-now');
  if (verifyNow) {
    verifyNow.disabled = !signedIn;
    verifyNow.title = signedIn ? '' : 'Sign in first';
  }
}

function signOut(notice) {
  const current = token();
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(EMAIL_KEY);
  if (current !== null) {
    fetch('/v1/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${current}` } })
      .catch(() => {});
  }
  showSignedIn();
  if (notice) showSignInError(notice);
}

function showSignInError(message) {
  const box = $('sign-in-error');
  box.textContent = message;
  box.hidden = !message;
}

async function signIn(event) {
  event.preventDefault();
  showSignInError('');
  const button = $('sign-in-button');
  button.disabled = true;
  const body = { email: $('email').value.trim(), password: $('password').value };
  const otp = $('otp').value.trim();
  if (otp) body.otp = otp;
  try {
    const response = await fetch('/v1/auth/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      showSignInError(`Sign-in failed: ${await errorMessage(response)}`);
      return;
    }
    const issued = await response.json();
    sessionStorage.setItem(TOKEN_KEY, issued.token);
    sessionStorage.setItem(EMAIL_KEY, body.email);
    $('password').value = '';
    $('otp').value = '';
    showSignedIn();
  } catch (error) {
    showSignInError(`Sign-in failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Getting a proof

async function verifyNow() {
  const auditId = $('audit-id').value;
  const current = token();
  if (current === null) {
    showSignedIn();
    return;
  }
  showBusy(`Fetching your proof for audit ${auditId}…`);
  let response;
  try {
    response = await fetch(`/v1/reserves/${encodeURIComponent(auditId)}/proof`, {
      headers: { Authorization: `Bearer ${current}` },
    });
  } catch (error) {
    showProblem(`Could not fetch your proof: ${error.message}`);
    return;
  }
  if (response.status === 401) {
    signOut('Your session has ended: please sign in again.');
    showProblem('Sign in again to fetch your proof.');
    return;
  }
  if (!response.ok) {
    showProblem(`No proof: ${await errorMessage(response)}`);
    return;
  }
  const text = await response.text();
  await verifyText(text, `proof-${auditId}.json`);
}

async function verifyFile(file) {
  if (!file) return;
  if (file.size > MAX_PROOF_BYTES) {
    showProblem(`${file.name} is ${file.size} bytes: a proof is at most ${MAX_PROOF_BYTES} bytes`);
    return;
  }
  showBusy(`Reading ${file.name}…`);
  await verifyText(await file.text(), null);
}

async function verifyText(text, downloadName) {
  let proof;
  try {
    proof = JSON.parse(text);
  } catch (error) {
    const message = `The file is not JSON: ${error.message}`;
    const check = { name: 'structure', ok: false, message };
    showOutcome(
      { valid: false, checks: [check], steps: [{ status: 'fail', check: 'structure', text: message }] },
      null,
      null,
    );
    return;
  }
  let result;
  try {
    result = await verifyProof(proof);
  } catch (error) {
    showProblem(`The proof could not be checked: ${error.message}`);
    return;
  }
  const published = result.auditId === null ? null : await comparePublished(result);
  showOutcome(result, published, downloadName === null ? null : { text, name: downloadName });
}

/** Compare the proof's root and totals with what this server published for its audit. Returns
 * {state: 'match'|'mismatch'|'unknown', text, checks}. */
async function comparePublished(result) {
  let response;
  try {
    response = await fetch(`/v1/reserves/${encodeURIComponent(result.auditId)}`);
  } catch (error) {
    return { state: 'unknown', text: `Could not fetch the published root: ${error.message}` };
  }
  if (response.status === 404) {
    return {
      state: 'unknown',
      text: `Audit ${result.auditId} is not published on this server: the root was not compared`,
    };
  }
  if (!response.ok) {
    return { state: 'unknown', text: `Could not fetch the published root: ${await errorMessage(response)}` };
  }
  const audit = await response.json();
  const rootOk = audit.root === result.root;
  const totalsOk =
    Object.keys(audit.totals).length === Object.keys(result.totals).length &&
    Object.entries(audit.totals).every(([code, amount]) => result.totals[code] === amount);
  const checks = [
    {
      name: 'published root',
      ok: rootOk,
      message: rootOk
        ? `Root matches the root published for audit ${audit.audit_id}`
        : `The proof's root ${result.root.slice(0, 16)}… is not the published root ${audit.root.slice(0, 16)}…`,
    },
    {
      name: 'published totals',
      ok: totalsOk,
      message: totalsOk
        ? 'Totals match the published liabilities'
        : "The proof's totals are not the published liabilities",
    },
  ];
  const ok = rootOk && totalsOk;
  return {
    state: ok ? 'match' : 'mismatch',
    text: ok
      ? `Published root for audit ${audit.audit_id}: matches`
      : `Published root for audit ${audit.audit_id}: does NOT match this proof`,
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

function showBusy(text) {
  resetResult();
  const verdict = $('verdict');
  verdict.className = 'verdict busy';
  verdict.textContent = text;
}

function showProblem(text) {
  resetResult();
  const verdict = $('verdict');
  verdict.className = 'verdict problem';
  verdict.textContent = text;
}

function verdictText(result, published) {
  const failed = [...result.checks, ...(published && published.checks ? published.checks : [])]
    .filter((check) => !check.ok)
    .map((check) => CHECK_LABELS[check.name] || check.name);
  if (failed.length) return { ok: false, text: `Invalid: ${[...new Set(failed)].join(', ')}` };
  if (!result.valid) return { ok: false, text: 'Invalid' };
  if (!published || published.state !== 'match') {
    return { ok: true, text: 'Valid (not compared with a published root)' };
  }
  return { ok: true, text: 'Valid' };
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
    $('published').textContent = published.text;
  }
  showSummary(result);
  const steps = [...result.steps];
  if (published && published.checks) {
    for (const check of published.checks) {
      steps.push({ status: check.ok ? 'ok' : 'fail', check: check.name, text: check.message });
    }
  }
  const list = $('steps');
  for (const step of steps) {
    const item = element('li', `step ${step.status}`);
    const mark = { ok: '✓', fail: '✗', info: '·' }[step.status];
    item.append(element('span', 'mark', mark), element('span', 'text', step.text));
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
  add('Audit', result.auditId);
  add('Account', result.accountId);
  for (const [code, amount] of Object.entries(result.balances)) add(`Your ${code}`, amount);
  add('Root', result.root, 'wide');
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

async function checkToken() {
  const current = token();
  if (current === null) return;
  const response = await fetch('/v1/me', { headers: { Authorization: `Bearer ${current}` } }).catch(() => null);
  if (response && response.status === 401) signOut('Your session has ended: please sign in again.');
}

function start() {
  $('sign-in').addEventListener('submit', signIn);
  $('sign-in-button').disabled = false;
  $('sign-out').addEventListener('click', () => signOut(''));
  const button = $('verify-now');
  if (button) button.addEventListener('click', verifyNow);
  wireDropZone();
  showSignedIn();
  checkToken();
  document.body.dataset.ready = 'true';
}

start();
