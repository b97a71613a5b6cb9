// Pending approvals: the evidence for each, a comment box, approve and reject buttons; then the
// recent decisions. Approving a promotion moves all of the alias's traffic to the candidate.

import { api, seg, session } from '../api.js';
import { h, clear, table, facts, badge, percent, number, timeElement } from '../dom.js';
import { stateName } from './adapter.js';

export async function render(container, ctx) {
  const result = h('div', { 'aria-live': 'polite' });
  const pendingList = h('div', { class: 'approvals', testid: 'pending-approvals' });
  const recent = h('section', { class: 'card', 'aria-labelledby': 'recent-title' });
  container.append(h('h1', null, 'Approvals'), result, pendingList, recent);

  const draw = async () => {
    const [pending, all] = await Promise.all([
      api('/admin/approvals', { signal: ctx.signal }),
      api('/admin/approvals?status=all', { signal: ctx.signal }),
    ]);
    drawPending(pendingList, pending.data, resolve);
    drawRecent(recent, all.data.filter((a) => stateName(a.status) !== 'pending'));
  };

  const resolve = async (approval, approve, comment, buttons) => {
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await api(`/admin/approvals/${seg(approval.id)}`, { method: 'POST', body: { approve, comment: comment || undefined } });
      const detail = await api(`/admin/adapters/${seg(approval.adapter)}`);
      const routing = (detail.alias?.arms ?? []).map((a) => `${a.model} ${percent(a.weight)}`).join(', ') || 'no route';
      const verb = approve ? 'Approved' : 'Rejected';
      const message = `${verb} ${approval.action} of ${approval.adapter}@${approval.version}. ${approval.adapter} now routes to ${routing}.`;
      clear(result).append(h('div', { class: 'card notice', testid: 'approval-result' },
        h('p', null, message), h('p', null, h('a', { href: `#/adapters/${encodeURIComponent(approval.adapter)}`, testid: 'approval-result-link' }, `Open ${approval.adapter}`))));
      ctx.toast(message, 'ok');
      ctx.refreshPending();
      await draw();
    } catch (error) {
      buttons.forEach((b) => { b.disabled = false; });
      ctx.fail(approve ? 'Approval' : 'Rejection', error);
    }
  };

  await draw();
  ctx.every(5000, draw);
}

function evidenceSummary(evidence) {
  if (!evidence || typeof evidence !== 'object') return null;
  const verdict = evidence.last_verdict ?? evidence.verdict ?? evidence;
  const parts = [];
  if (verdict.decision) parts.push(h('p', null, 'Canary decision: ', badge(stateName(verdict.decision).replaceAll('_', ' '), 'info')));
  if (verdict.control_requests !== undefined) {
    parts.push(h('p', null, `Requests: control ${number(verdict.control_requests)}, candidate ${number(verdict.candidate_requests)}`));
  }
  if (verdict.positive_feedback) {
    parts.push(h('p', null, `Positive feedback: control ${percent(verdict.positive_feedback.control_value, 1)}, candidate ${percent(verdict.positive_feedback.candidate_value, 1)}`));
  }
  if (Array.isArray(verdict.reasons) && verdict.reasons.length) parts.push(h('ul', { class: 'reasons' }, verdict.reasons.map((r) => h('li', null, r))));
  if (parts.length === 0) {
    const pairs = Object.entries(evidence).filter(([, v]) => v === null || typeof v !== 'object');
    if (pairs.length) parts.push(facts(pairs.map(([k, v]) => [k.replaceAll('_', ' '), String(v)]), { class: 'facts compact' }));
  }
  return parts.length ? h('div', { class: 'evidence' }, parts) : null;
}

function drawPending(list, pending, resolve) {
  // Redraw only when the pending set changed, so typing and clicking are never disturbed.
  const ids = pending.map((a) => a.id).join(' ');
  if (list.dataset.ids === ids && list.childElementCount > 0) return;
  list.dataset.ids = ids;
  const typed = new Map([...list.querySelectorAll('textarea')].map((t) => [t.dataset.id, t.value]));
  clear(list);
  if (pending.length === 0) {
    list.append(h('p', { class: 'card muted', testid: 'no-approvals' }, 'Nothing is waiting for approval.'));
    return;
  }
  const canDecide = session.can('operator');
  for (const approval of pending) {
    const commentId = `comment-${approval.id}`;
    const comment = h('textarea', { id: commentId, rows: 2, 'data-id': approval.id, testid: 'approval-comment', placeholder: 'Why (kept in the audit trail)' });
    comment.value = typed.get(approval.id) ?? '';
    const approveButton = h('button', { type: 'button', class: 'button primary', testid: 'approve', disabled: !canDecide });
    const rejectButton = h('button', { type: 'button', class: 'button danger', testid: 'reject', disabled: !canDecide });
    approveButton.textContent = approval.action === 'rollback' ? 'Approve rollback' : 'Approve';
    rejectButton.textContent = 'Reject';
    const buttons = [approveButton, rejectButton];
    approveButton.addEventListener('click', () => resolve(approval, true, comment.value.trim(), buttons));
    rejectButton.addEventListener('click', () => resolve(approval, false, comment.value.trim(), buttons));
    const headingId = `approval-${approval.id}`;
    list.append(h('article', { class: 'card approval', 'aria-labelledby': headingId, testid: 'approval', 'data-id': approval.id, 'data-adapter': approval.adapter, 'data-version': approval.version },
      h('h2', { id: headingId }, `${approval.action === 'rollback' ? 'Roll back' : 'Promote'} `,
        h('a', { href: `#/adapters/${encodeURIComponent(approval.adapter)}` }, approval.adapter), '@', approval.version),
      facts([['Requested', timeElement(approval.created_at)], ['Id', h('code', null, approval.id)]]),
      evidenceSummary(approval.evidence),
      h('div', { class: 'field' }, h('label', { for: commentId }, 'Comment'), comment),
      h('div', { class: 'actions' }, approveButton, rejectButton),
      canDecide ? null : h('p', { class: 'muted' }, 'Only keys with the operator role can decide.')));
  }
}

function drawRecent(card, resolved) {
  const newest = [...resolved].sort((a, b) => String(b.resolved_at ?? '').localeCompare(String(a.resolved_at ?? ''))).slice(0, 25);
  clear(card).append(h('h2', { id: 'recent-title' }, 'Recent decisions'), table({
    columns: ['Resolved', 'Adapter', 'Version', 'Action', 'Outcome', 'By', 'Comment'],
    empty: 'No decisions yet.',
    testid: 'recent-approvals',
    rows: newest.map((a) => ({
      props: { testid: 'recent-approval', 'data-id': a.id },
      cells: [timeElement(a.resolved_at), a.adapter, h('code', null, a.version), a.action,
        badge(stateName(a.status), stateName(a.status) === 'approved' ? 'ok' : stateName(a.status) === 'rejected' ? 'bad' : 'muted'),
        a.resolved_by ?? '—', a.comment ?? ''],
    })),
  }));
}
