// Job history: every step of every pipeline run, newest first, with a filter by adapter.

import { api } from '../api.js';
import { h, clear, table, badge, timeElement, duration } from '../dom.js';

const STATUS_KIND = { running: 'info', succeeded: 'ok', failed: 'bad', skipped: 'muted', waiting: 'warn' };

export async function render(container, ctx) {
  const filter = h('input', { id: 'jobs-adapter', type: 'search', placeholder: 'all adapters', testid: 'jobs-filter' });
  const body = h('div');
  container.append(h('h1', null, 'Job history'),
    h('div', { class: 'toolbar' }, h('label', { for: 'jobs-adapter' }, 'Adapter'), filter), body);

  const draw = async () => {
    const adapter = filter.value.trim();
    const query = adapter ? `?limit=200&adapter=${encodeURIComponent(adapter)}` : '?limit=200';
    const jobs = (await api(`/admin/jobs${query}`, { signal: ctx.signal })).data;
    clear(body).append(table({
      caption: 'Newest first (at most 200).',
      columns: ['Started', 'Adapter', 'Step', 'Status', 'Duration', 'Version', 'Trigger', 'Run', 'Message'],
      empty: 'No jobs have run.',
      testid: 'jobs-table',
      rows: jobs.map((j) => ({
        props: { testid: 'job-row', 'data-run': j.run_id, 'data-step': j.step },
        cells: [timeElement(j.started_at), j.adapter, j.step, badge(j.status, STATUS_KIND[j.status]),
          j.finished_at ? duration(j.started_at, j.finished_at) : '—', j.version ?? '—', j.trigger ?? '—',
          h('code', { title: j.run_id }, String(j.run_id).slice(0, 8)), j.message ?? ''],
      })),
    }));
  };

  let debounce = null;
  filter.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => draw().catch((error) => ctx.fail('Loading jobs', error)), 300);
  });
  await draw();
  ctx.every(5000, draw);
}
