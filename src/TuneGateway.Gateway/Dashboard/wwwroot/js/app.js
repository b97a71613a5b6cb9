// The dashboard's shell: sign-in with an API key, hash routing between the sections, polling
// that stops when the section changes, toasts, the confirmation dialog, and error display.

import { api, ApiError, session } from './api.js';
import { h, clear } from './dom.js';
import * as overview from './views/overview.js';
import * as adapter from './views/adapter.js';
import * as approvals from './views/approvals.js';
import * as pipelines from './views/pipelines.js';
import * as jobs from './views/jobs.js';
import * as audit from './views/audit.js';

const routes = [
  { pattern: /^#?\/?$/, section: 'adapters', view: overview },
  { pattern: /^#\/adapters\/([^/]+)$/, section: 'adapters', view: adapter },
  { pattern: /^#\/approvals$/, section: 'approvals', view: approvals },
  { pattern: /^#\/pipelines$/, section: 'pipelines', view: pipelines },
  { pattern: /^#\/jobs$/, section: 'jobs', view: jobs },
  { pattern: /^#\/audit$/, section: 'audit', view: audit },
];

const $ = (id) => document.getElementById(id);
const viewRoot = $('view');
let current = null; // { controller: AbortController }
let badgeTimer = null;

// ---- feedback ----

let toastTimer = null;
function toast(message, kind = 'info') {
  const box = $('toast');
  box.textContent = message;
  box.className = `toast toast-${kind}`;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 8000);
}

/** Asks for confirmation (and a reason); resolves to the reason, or null when cancelled. */
function confirmAction({ title, text, confirmLabel = 'Confirm', reason = '' }) {
  const dialog = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = confirmLabel;
  const input = $('confirm-reason');
  input.value = reason;
  return new Promise((resolve) => {
    const form = $('confirm-form');
    const cancel = $('confirm-cancel');
    const finish = (value) => {
      form.removeEventListener('submit', onSubmit);
      cancel.removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onCancel);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onSubmit = (event) => { event.preventDefault(); finish(input.value.trim()); };
    const onCancel = (event) => { event.preventDefault(); finish(null); };
    form.addEventListener('submit', onSubmit);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onCancel);
    dialog.showModal();
    input.focus();
  });
}

function errorBox(error) {
  if (error instanceof ApiError && error.isPermission) {
    return h('div', { class: 'card error-card', role: 'alert', testid: 'forbidden' },
      h('h2', null, 'Not allowed'),
      h('p', null, `The key “${session.identity?.name ?? '?'}” does not have the role this needs (403 Forbidden). `, error.message));
  }
  return h('div', { class: 'card error-card', role: 'alert', testid: 'error' },
    h('h2', null, 'Something went wrong'),
    h('p', null, error instanceof ApiError && error.status ? `${error.status}: ${error.message}` : error.message));
}

// ---- sign-in ----

function showLogin(message) {
  stopView();
  clearInterval(badgeTimer);
  session.identity = null;
  $('nav').hidden = true;
  $('session').hidden = true;
  clear(viewRoot);
  $('login').hidden = false;
  const error = $('login-error');
  error.textContent = message ?? '';
  error.hidden = !message;
  $('api-key').focus();
}

function signOut(message) {
  session.key = null;
  showLogin(message);
}

/** What a refused key is told. */
function refusal(error) {
  if (error.isAuthentication) return 'This API key was not accepted (401 Unauthorized). Check the key and try again.';
  if (error.isPermission) return 'This API key is valid but has neither the operator nor the mlops role (403 Forbidden), so it cannot use the dashboard.';
  return error.message;
}

async function signIn() {
  try {
    session.identity = await api('/admin/whoami');
  } catch (error) {
    if (error instanceof ApiError) {
      signOut(refusal(error));
      return;
    }
    throw error;
  }
  $('login').hidden = true;
  $('nav').hidden = false;
  $('session').hidden = false;
  $('session-name').textContent = session.identity.name ?? 'local';
  $('session-name').title = `Roles: ${session.identity.roles.join(', ')}`;
  refreshPendingBadge();
  clearInterval(badgeTimer);
  badgeTimer = setInterval(refreshPendingBadge, 10000);
  route();
}

async function refreshPendingBadge() {
  const badge = $('pending-badge');
  try {
    const pending = await api('/admin/approvals');
    const count = pending.data.length;
    badge.textContent = String(count);
    badge.setAttribute('aria-label', `${count} pending`);
    badge.hidden = count === 0;
  } catch (error) {
    if (error instanceof ApiError && error.isAuthentication) signOut(refusal(error));
    badge.hidden = true;
  }
}

// ---- routing ----

function stopView() {
  current?.controller.abort();
  current = null;
}

async function route() {
  if (!session.identity) return;
  stopView();
  const hash = window.location.hash || '#/';
  const match = routes.map((r) => ({ r, m: r.pattern.exec(hash) })).find((x) => x.m);
  for (const link of document.querySelectorAll('#nav a')) {
    if (match && link.dataset.section === match.r.section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  clear(viewRoot);
  if (!match) {
    viewRoot.append(h('div', { class: 'card' }, h('h1', null, 'Not found'), h('p', null, h('a', { href: '#/' }, 'Back to the adapters'))));
    return;
  }

  const controller = new AbortController();
  current = { controller };
  const ctx = {
    params: match.m.slice(1).map(decodeURIComponent),
    signal: controller.signal,
    toast,
    fail: reportFailure,
    confirm: confirmAction,
    refreshPending: refreshPendingBadge,
    /** Runs fn every ms milliseconds (after each run finishes) until the section changes. */
    every(ms, fn) {
      const tick = async () => {
        if (controller.signal.aborted) return;
        try {
          await fn();
        } catch (error) {
          if (!handleError(error, controller)) console.warn(error);
        }
        if (!controller.signal.aborted) setTimeout(tick, ms);
      };
      setTimeout(tick, ms);
    },
  };
  const container = h('div', { class: 'view' });
  viewRoot.append(container);
  try {
    await match.r.view.render(container, ctx);
  } catch (error) {
    if (!handleError(error, controller)) {
      clear(container).append(errorBox(error));
    }
  }
  if (!controller.signal.aborted) $('main').focus({ preventScroll: true });
}

/** Handles errors that concern the whole session; true when handled. */
function handleError(error, controller) {
  if (error?.name === 'AbortError' || controller.signal.aborted) return true;
  if (error instanceof ApiError && error.isAuthentication) {
    signOut('Your key is no longer accepted (401 Unauthorized). Sign in again.');
    return true;
  }
  return false;
}

/** Shows an action's failure (a refused key signs out). */
function reportFailure(what, error) {
  if (error instanceof ApiError && error.isAuthentication) {
    signOut('Your key is no longer accepted (401 Unauthorized). Sign in again.');
    return;
  }
  const detail = error instanceof ApiError && error.isPermission
    ? `this key lacks the role for it (403): ${error.message}`
    : error.message;
  toast(`${what} failed: ${detail}`, 'error');
}

// ---- start ----

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const key = $('api-key').value.trim();
  if (!key) return;
  session.key = key;
  $('api-key').value = '';
  signIn();
});
$('sign-out').addEventListener('click', () => signOut());
window.addEventListener('hashchange', route);

if (session.key) signIn();
else showLogin();
