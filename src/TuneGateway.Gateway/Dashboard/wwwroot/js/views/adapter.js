// One adapter: its routing, the live A/B test of a canary (per-arm numbers, the decision and
// its reasons, charts over the verdicts seen while the page is open), every version with its
// lineage, and the drift history. Polls every 2 s; drift every 20 s.

import { api, seg, session } from '../api.js';
import { h, clear, table, facts, badge, percent, number, timeElement, time, shortHash, seconds, timeSpanSeconds } from '../dom.js';
import { lineChart, clockTime } from '../charts.js';

const POLL_MS = 2000;
const DRIFT_EVERY = 10; // polls
const MAX_VERDICTS = 150;

/** "RolledBack" or "rolled_back" → "rolled_back". */
export function stateName(state) {
  return String(state ?? '').replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
}

const STATE_KIND = { production: 'ok', canary: 'canary', candidate: 'info', retired: 'muted', rejected: 'bad', rolled_back: 'bad' };

export function stateBadge(state) {
  const name = stateName(state);
  return badge(name.replace('_', ' '), STATE_KIND[name]);
}

const DECISION_KIND = {
  continue: 'info', candidate_better: 'ok', candidate_worse: 'bad', no_difference: 'muted',
  inconclusive: 'muted', guardrail_breached: 'bad', sample_ratio_mismatch: 'bad',
};

export async function render(container, ctx) {
  const [name] = ctx.params;
  const verdicts = []; // { elapsed, verdict } oldest first, while this page is open

  const title = h('h1', null, 'Adapter ', h('code', { testid: 'adapter-name' }, name));
  const routingCard = h('section', { class: 'card', 'aria-labelledby': 'routing-title', testid: 'routing' });
  const canaryCard = h('section', { class: 'card', 'aria-labelledby': 'ab-title', testid: 'ab' });
  const versionsCard = h('section', { class: 'card', 'aria-labelledby': 'versions-title', testid: 'versions' });
  const driftCard = h('section', { class: 'card', 'aria-labelledby': 'drift-title', testid: 'drift' });
  container.append(h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Adapters'), ' / ', name), title,
    routingCard, canaryCard, versionsCard, driftCard);

  let polls = 0;
  const refresh = async () => {
    const detail = await api(`/admin/adapters/${seg(name)}`, { signal: ctx.signal });
    const verdict = detail.canary?.last_verdict;
    if (verdict) {
      const elapsed = timeSpanSeconds(verdict.elapsed) ?? 0;
      const last = verdicts[verdicts.length - 1];
      if (!last || last.elapsed !== elapsed || last.verdict.candidate_requests !== verdict.candidate_requests) {
        verdicts.push({ elapsed, verdict });
        if (verdicts.length > MAX_VERDICTS) verdicts.shift();
      }
    } else if (!detail.canary) {
      verdicts.length = 0;
    }
    drawRouting(routingCard, detail, ctx, refresh);
    drawCanary(canaryCard, detail, verdicts);
    drawVersions(versionsCard, detail, ctx, refresh);
    if (polls++ % DRIFT_EVERY === 0) await drawDrift(driftCard, name, ctx);
  };
  await refresh();
  ctx.every(POLL_MS, refresh);
}

// ---- routing and rollback ----

function drawRouting(card, detail, ctx, refresh) {
  const alias = detail.alias;
  const production = detail.versions.filter((v) => stateName(v.state) === 'production').at(-1);
  const rows = (alias?.arms ?? []).map((arm) => ({
    props: { testid: 'route-arm', 'data-model': arm.model, 'data-weight': String(arm.weight) },
    cells: [h('code', null, arm.model), arm.arm ?? '—', h('span', { testid: 'route-weight' }, percent(arm.weight)), weightBar(arm.weight)],
  }));
  const actions = h('div', { class: 'actions' });
  if (session.can('operator') && (detail.canary || production)) {
    const label = detail.canary ? `Roll back canary ${detail.canary.candidate}` : 'Roll back production';
    actions.append(h('button', {
      type: 'button', class: 'button danger', testid: 'rollback',
      onclick: () => rollback(detail, ctx, refresh),
    }, label));
  }
  clear(card).append(
    h('h2', { id: 'routing-title' }, 'Routing'),
    alias ? h('p', { class: 'muted' }, `Revision ${alias.revision}, changed ${time(alias.updated_at)}`, alias.updated_by ? ` by ${alias.updated_by}` : '', '.')
      : h('p', { class: 'muted' }, 'This adapter has no alias route yet.'),
    table({ caption: `Where requests for “${detail.adapter}” go`, columns: ['Version', 'Arm', 'Weight', ''], rows, empty: 'No arms.', testid: 'route-table' }),
    actions);
}

function weightBar(weight) {
  const bar = h('span', { class: 'weight-bar', 'aria-hidden': 'true' }, h('span', { class: 'weight-fill' }));
  // CSSOM, not a style attribute: allowed by the page's Content-Security-Policy.
  bar.firstChild.style.width = `${Math.round(Math.max(0, Math.min(1, weight)) * 100)}%`;
  return bar;
}

async function rollback(detail, ctx, refresh) {
  const canary = detail.canary;
  const text = canary
    ? `All traffic goes back to ${canary.control}; ${canary.candidate} is marked rolled back.`
    : 'Production goes back to the most recently retired version.';
  const reason = await ctx.confirm({ title: `Roll back ${detail.adapter}?`, text, confirmLabel: 'Roll back', reason: 'rolled back from the dashboard' });
  if (reason === null) return;
  try {
    const restored = await api(`/admin/adapters/${seg(detail.adapter)}/rollback`, { method: 'POST', body: { reason: reason || undefined } });
    ctx.toast(`Rolled back: ${detail.adapter} now serves ${restored.version}.`, 'ok');
    await refresh();
    ctx.refreshPending();
  } catch (error) {
    ctx.fail('Rollback', error);
  }
}

async function promote(adapter, version, ctx, refresh) {
  const reason = await ctx.confirm({
    title: `Promote ${adapter}@${version}?`,
    text: `All traffic for ${adapter} goes to ${version}; the current production version is retired.`,
    confirmLabel: 'Promote',
    reason: 'promoted from the dashboard',
  });
  if (reason === null) return;
  try {
    await api(`/admin/adapters/${seg(adapter)}/promote`, { method: 'POST', body: { version, reason: reason || undefined } });
    ctx.toast(`Promoted: ${adapter} now serves ${version}.`, 'ok');
    await refresh();
    ctx.refreshPending();
  } catch (error) {
    ctx.fail('Promotion', error);
  }
}

// ---- live A/B ----

function guardrail(verdict, name) {
  return verdict.guardrails?.find((g) => g.name === name && g.evaluated !== false && g.observed !== null && g.observed !== undefined) ?? null;
}

function comparisonRow(label, comparison, format, testid) {
  if (!comparison) return { props: { testid }, cells: [label, '—', '—', h('span', { class: 'muted' }, 'not tested yet')] };
  const test = comparison.test ?? {};
  const interval = test.lower !== undefined ? ` [${format(test.lower)}, ${format(test.upper)}]` : '';
  return {
    props: { testid },
    cells: [
      label,
      `${format(comparison.control_value)} (n = ${number(comparison.control_count)})`,
      `${format(comparison.candidate_value)} (n = ${number(comparison.candidate_count)})`,
      `${format(test.estimate)}${interval}, p = ${number(test.p_value, 2)}`,
    ],
  };
}

function drawCanary(card, detail, verdicts) {
  const canary = detail.canary;
  clear(card).append(h('h2', { id: 'ab-title' }, 'Live A/B test'));
  if (!canary) {
    card.append(h('p', { class: 'muted', testid: 'no-canary' }, 'No canary is running.'));
    return;
  }
  card.append(facts([
    ['Control', h('code', null, canary.control)],
    ['Candidate', h('code', { testid: 'canary-candidate' }, canary.candidate)],
    ['Candidate share', percent(canary.share)],
    ['Started', timeElement(canary.started_at)],
    ['Approval', canary.approval_id ? h('a', { href: '#/approvals' }, 'waiting for an operator') : null],
  ]));

  const verdict = canary.last_verdict;
  if (!verdict) {
    card.append(h('p', { class: 'muted' }, 'No verdict yet: the canary has not been analysed.'));
    return;
  }
  const decision = stateName(verdict.decision);
  card.append(h('div', { class: 'verdict' },
    h('p', null, 'Decision: ', h('span', { testid: 'verdict-decision' }, badge(decision.replaceAll('_', ' '), DECISION_KIND[decision])),
      ` after ${seconds(timeSpanSeconds(verdict.elapsed))}`),
    h('ul', { class: 'reasons', testid: 'verdict-reasons' }, (verdict.reasons ?? []).map((r) => h('li', null, r)))));

  const errorRate = guardrail(verdict, 'error_rate');
  const errorIncrease = guardrail(verdict, 'error_rate_increase');
  const controlErrors = errorRate && errorIncrease ? errorRate.observed - errorIncrease.observed : null;
  const latency = guardrail(verdict, 'p95_latency_ms');
  const ttft = guardrail(verdict, 'p95_ttft_ms');
  const ms = (v) => (v === null || v === undefined ? '—' : `${number(v, 3)} ms`);
  const ratio = verdict.sample_ratio;
  card.append(table({
    caption: 'Per arm, at the last analysis (difference: candidate − control with its always-valid confidence sequence)',
    columns: ['Metric', `Control ${canary.control}`, `Candidate ${canary.candidate}`, 'Difference'],
    testid: 'ab-table',
    rows: [
      { props: { testid: 'ab-requests' }, cells: ['Requests', number(verdict.control_requests), number(verdict.candidate_requests),
        ratio ? `share ${percent(ratio.observed_candidate_share, 1)} (expected ${percent(ratio.expected_candidate_share, 1)})${ratio.mismatch ? ' — mismatch!' : ''}` : '—'] },
      { props: { testid: 'ab-errors' }, cells: ['Error rate', percent(controlErrors, 2), errorRate ? percent(errorRate.observed, 2) : '—',
        errorIncrease ? `${percent(errorIncrease.observed, 2)}` : '—'] },
      comparisonRow('Positive feedback', verdict.positive_feedback, (v) => percent(v, 1), 'ab-feedback'),
      comparisonRow('Task metric', verdict.task_metric, (v) => number(v, 3), 'ab-task'),
      { props: { testid: 'ab-latency' }, cells: ['p95 latency', '—', ms(latency?.observed), latency?.limit ? `limit ${ms(latency.limit)}` : '—'] },
      { props: { testid: 'ab-ttft' }, cells: ['p95 time to first token', '—', ms(ttft?.observed), ttft?.limit ? `limit ${ms(ttft.limit)}` : '—'] },
    ],
  }));

  if (verdict.guardrails?.length) {
    card.append(table({
      caption: 'Guardrails',
      columns: ['Guardrail', 'Observed', 'Limit', 'p', 'State', 'Detail'],
      testid: 'guardrails',
      rows: verdict.guardrails.map((g) => ({
        cells: [g.name, number(g.observed), number(g.limit), number(g.p_value, 2),
          g.breached ? badge('breached', 'bad') : g.evaluated ? badge('ok', 'ok') : badge('waiting', 'muted'), g.detail],
      })),
    }));
  }

  const x = (v) => v.elapsed;
  const seriesOf = (pick) => [
    { name: `control ${canary.control}`, points: verdicts.map((v) => ({ x: x(v), y: pick(v.verdict, 'control') })) },
    { name: `candidate ${canary.candidate}`, points: verdicts.map((v) => ({ x: x(v), y: pick(v.verdict, 'candidate') })) },
  ];
  const fmtX = (s) => seconds(s);
  card.append(h('p', { class: 'muted' }, `Charts: the ${verdicts.length} verdict(s) seen since this page opened, over the canary's running time.`),
    h('div', { class: 'charts' },
      lineChart({
        title: 'Positive-feedback rate per arm', testid: 'chart-feedback', yMin: 0, xFormat: fmtX,
        yFormat: (v) => percent(v), series: seriesOf((v, arm) => v.positive_feedback?.[`${arm}_value`] ?? null),
      }),
      lineChart({
        title: 'Requests per arm', testid: 'chart-requests', yMin: 0, xFormat: fmtX,
        series: seriesOf((v, arm) => v[`${arm}_requests`]),
      }),
      lineChart({
        title: 'Task metric per arm', testid: 'chart-task', xFormat: fmtX,
        series: seriesOf((v, arm) => v.task_metric?.[`${arm}_value`] ?? null),
      })));
}

// ---- versions and lineage ----

function trainingSummary(report) {
  if (!report) return '—';
  const steps = report.steps ?? [];
  const last = steps.length ? steps[steps.length - 1].loss : null;
  return facts([
    ['Examples', report.train_examples !== undefined ? `${report.train_examples} train, ${report.validation_examples ?? 0} validation` : null],
    ['Epochs', report.epochs_run ?? null],
    ['Final loss', last !== null ? number(last) : null],
    ['Best validation loss', report.best_validation_loss !== null && report.best_validation_loss !== undefined ? number(report.best_validation_loss) : null],
    ['Stopped', report.stopped ?? null],
    ['Time', report.seconds !== undefined ? seconds(report.seconds) : null],
  ], { class: 'facts compact' });
}

function scalar(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') return number(value);
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return `${value.length} item(s)`;
  if (typeof value.correct === 'number' && typeof value.examples === 'number') {
    return `${value.correct}/${value.examples} (${percent(value.examples ? value.correct / value.examples : null, 1)})`;
  }
  return Object.entries(value).filter(([, v]) => typeof v !== 'object' || v === null).map(([k, v]) => `${k} ${scalar(v)}`).join(', ');
}

function evaluationSummary(evaluation) {
  if (!evaluation) return '—';
  if (typeof evaluation !== 'object') return String(evaluation);
  const pairs = Object.entries(evaluation).map(([k, v]) => [k.replaceAll('_', ' '), scalar(v)]);
  const passed = evaluation.passed;
  return h('div', null, passed === true ? badge('passed', 'ok') : passed === false ? badge('failed', 'bad') : null,
    facts(pairs.filter(([k]) => k !== 'passed'), { class: 'facts compact' }));
}

function drawVersions(card, detail, ctx, refresh) {
  const open = new Set([...card.querySelectorAll('details[open]')].map((d) => d.dataset.version));
  const canPromote = session.can('operator');
  const rows = [...detail.versions].reverse().map((v) => {
    const state = stateName(v.state);
    const more = h('details', { 'data-version': v.version },
      h('summary', null, 'Lineage'),
      facts([
        ['Artifact', h('code', null, v.artifact_path)],
        ['Weights SHA-256', shortHash(v.sha256)],
        ['Base model', v.base_model],
        ['Base model SHA-256', v.base_model_sha256 ? shortHash(v.base_model_sha256) : null],
        ['Dataset', v.dataset_id],
        ['Dataset SHA-256', v.dataset_sha256 ? shortHash(v.dataset_sha256) : null],
        ['Training', trainingSummary(v.training_report)],
        ['Evaluation', evaluationSummary(v.evaluation)],
        ['Updated', timeElement(v.updated_at)],
      ]));
    if (open.has(v.version)) more.open = true;
    const actions = [];
    if (canPromote && ['candidate', 'canary', 'retired', 'rolled_back'].includes(state)) {
      actions.push(h('button', {
        type: 'button', class: 'button subtle', testid: 'promote',
        onclick: () => promote(detail.adapter, v.version, ctx, refresh),
      }, 'Promote'));
    }
    return {
      props: { testid: 'version-row', 'data-version': v.version, 'data-state': state },
      cells: [
        h('code', null, v.version),
        h('span', { testid: 'version-state' }, stateBadge(v.state)),
        v.parent_version ? h('code', null, v.parent_version) : '—',
        v.dataset_sha256 ? shortHash(v.dataset_sha256) : v.dataset_id ?? '—',
        timeElement(v.created_at),
        h('span', { class: 'reason' }, v.state_reason ?? ''),
        h('div', null, more, actions),
      ],
    };
  });
  clear(card).append(
    h('h2', { id: 'versions-title' }, 'Versions'),
    table({
      caption: 'Newest first. Lineage: the parent version, the dataset it was trained on, its training report and evaluation.',
      columns: ['Version', 'State', 'Parent', 'Dataset', 'Created', 'Reason', ''],
      rows,
      testid: 'versions-table',
    }));
  if (detail.pipeline) {
    card.append(h('p', { class: 'muted' }, `Pipeline revision ${detail.pipeline.revision}${detail.pipeline.paused ? ' (paused)' : ''}: `,
      h('a', { href: '#/pipelines' }, 'schedule and runs')));
  }
}

// ---- drift ----

async function drawDrift(card, name, ctx) {
  const drift = await api(`/admin/adapters/${seg(name)}/drift`, { signal: ctx.signal });
  const history = drift.history ?? [];
  clear(card).append(h('h2', { id: 'drift-title' }, 'Drift'));
  if (history.length === 0) {
    card.append(h('p', { class: 'muted', testid: 'no-drift' }, 'No drift checks yet.'));
    return;
  }
  const at = (check) => new Date(check.at).getTime();
  const thresholds = history[history.length - 1].report?.thresholds ?? {};
  const features = [...new Set(history.flatMap((c) => (c.report?.numeric ?? []).map((n) => n.feature)))];
  const psi = features.map((feature) => ({
    name: feature,
    points: history.map((c) => ({ x: at(c), y: c.report?.numeric?.find((n) => n.feature === feature)?.psi ?? null })),
  }));
  const latest = history[history.length - 1];
  card.append(
    facts([
      ['Last check', timeElement(latest.at)],
      ['Production version', latest.production_version],
      ['Reference', latest.reference_source],
      ['Alarms', latest.report?.alarms?.length ? h('ul', { testid: 'drift-alarms' }, latest.report.alarms.map((a) => h('li', null, a))) : 'none'],
    ]),
    h('div', { class: 'charts' },
      lineChart({
        title: 'Population stability index per feature', testid: 'chart-psi', yMin: 0, xFormat: clockTime, series: psi,
        thresholds: thresholds.psi ? [{ y: thresholds.psi, label: `alarm > ${thresholds.psi}` }] : [],
      }),
      lineChart({
        title: 'Jensen–Shannon distance of prompt tokens', testid: 'chart-js', yMin: 0, xFormat: clockTime,
        series: [{ name: 'JS distance', points: history.map((c) => ({ x: at(c), y: c.report?.tokens?.js_distance ?? null })) }],
        thresholds: thresholds.js_distance ? [{ y: thresholds.js_distance, label: `alarm > ${thresholds.js_distance}` }] : [],
      }),
      lineChart({
        title: 'MMD of prompt embeddings (permutation p-value)', testid: 'chart-mmd', yMin: 0, yMax: 1, xFormat: clockTime,
        series: [{ name: 'MMD p-value', points: history.map((c) => ({ x: at(c), y: c.report?.embeddings?.p_value ?? null })) }],
        thresholds: thresholds.mmd_p_value ? [{ y: thresholds.mmd_p_value, label: `alarm < ${thresholds.mmd_p_value}` }] : [],
      })));
}
