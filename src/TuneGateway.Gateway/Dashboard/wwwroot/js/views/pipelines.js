// Pipelines: schedule, triggers, promotion policy, paused or not, next run; pause, resume, run now.

import { api, seg, session } from '../api.js';
import { h, clear, table, badge, timeElement, seconds, timeSpanSeconds } from '../dom.js';

export async function render(container, ctx) {
  const body = h('div');
  container.append(h('h1', null, 'Pipelines'), body);

  const draw = async () => {
    const list = (await api('/admin/pipelines', { signal: ctx.signal })).data;
    const details = await Promise.all(list.map((p) => api(`/admin/pipelines/${seg(p.adapter)}`, { signal: ctx.signal })));
    const canRun = session.can('mlops') || session.can('operator');
    clear(body).append(table({
      caption: 'Retraining pipelines, one per adapter.',
      columns: ['Adapter', 'Schedule', 'Triggers', 'Promotion', 'State', 'Next run', 'Revision', 'Actions'],
      empty: 'No pipelines are defined.',
      testid: 'pipelines-table',
      rows: list.map((p, i) => {
        const definition = p.definition ?? {};
        const schedule = definition.schedule?.cron ? h('span', null, h('code', null, definition.schedule.cron), ` ${definition.schedule.time_zone ?? 'UTC'}`) : 'manual only';
        const triggers = [];
        if (definition.triggers?.on_drift !== false) triggers.push('on drift');
        if (definition.triggers?.feedback_count) triggers.push(`every ${definition.triggers.feedback_count} feedback items`);
        const interval = timeSpanSeconds(definition.triggers?.check_interval);
        const actions = h('div', { class: 'actions' });
        if (canRun) {
          actions.append(
            p.paused
              ? h('button', { type: 'button', class: 'button subtle', testid: 'pipeline-resume', onclick: () => act(p.adapter, 'resume', 'Resumed') }, 'Resume')
              : h('button', { type: 'button', class: 'button subtle', testid: 'pipeline-pause', onclick: () => act(p.adapter, 'pause', 'Paused') }, 'Pause'),
            h('button', { type: 'button', class: 'button primary', testid: 'pipeline-run', onclick: () => act(p.adapter, 'run', 'Run requested for') }, 'Run now'));
        }
        return {
          props: { testid: 'pipeline-row', 'data-adapter': p.adapter },
          cells: [
            h('a', { href: `#/adapters/${encodeURIComponent(p.adapter)}` }, p.adapter),
            schedule,
            triggers.length ? `${triggers.join(', ')}${interval ? ` (checked every ${seconds(interval)})` : ''}` : 'none',
            definition.promotion ?? 'approval',
            h('span', { testid: 'pipeline-state' }, p.paused ? badge('paused', 'warn') : badge('active', 'ok')),
            details[i].next_run ? timeElement(details[i].next_run) : '—',
            h('span', null, String(p.revision), p.updated_by ? h('span', { class: 'muted' }, ` by ${p.updated_by}`) : null),
            actions,
          ],
        };
      }),
    }));
  };

  const act = async (adapter, action, verb) => {
    try {
      await api(`/admin/pipelines/${seg(adapter)}/${action}`, { method: 'POST' });
      ctx.toast(`${verb} ${adapter}.`, 'ok');
      await draw();
    } catch (error) {
      ctx.fail(`${verb} ${adapter}`, error);
    }
  };

  await draw();
  ctx.every(10000, draw);
}
