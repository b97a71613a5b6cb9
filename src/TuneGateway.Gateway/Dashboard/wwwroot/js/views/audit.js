// The audit trail: who changed what, when and why; newest first, filtered by adapter or text.

import { api } from '../api.js';
import { h, clear, table, timeElement } from '../dom.js';

const PAGE = 1000;

export async function render(container, ctx) {
  const adapterInput = h('input', { id: 'audit-adapter', type: 'search', placeholder: 'all adapters', testid: 'audit-adapter' });
  const textInput = h('input', { id: 'audit-text', type: 'search', placeholder: 'actor, action, reason…', testid: 'audit-text' });
  const body = h('div');
  container.append(h('h1', null, 'Audit trail'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'audit-adapter' }, 'Adapter'), adapterInput,
      h('label', { for: 'audit-text' }, 'Contains'), textInput),
    body);

  // The API pages forward from a sequence number: keep what was read and fetch only what is new.
  let events = [];
  let adapterLoaded = null;

  const load = async () => {
    const adapter = adapterInput.value.trim();
    if (adapter !== adapterLoaded) { events = []; adapterLoaded = adapter; }
    for (;;) {
      const after = events.length ? events[events.length - 1].sequence : 0;
      const query = `?limit=${PAGE}&after=${after}${adapter ? `&adapter=${encodeURIComponent(adapter)}` : ''}`;
      const page = (await api(`/admin/audit${query}`, { signal: ctx.signal })).data;
      events.push(...page);
      if (page.length < PAGE) break;
    }
  };

  const draw = () => {
    const text = textInput.value.trim().toLowerCase();
    const shown = events.filter((e) => !text || JSON.stringify(e).toLowerCase().includes(text)).slice().reverse();
    clear(body).append(table({
      caption: `${shown.length} event(s), newest first.`,
      columns: ['#', 'Time', 'Actor', 'Action', 'Adapter', 'Version', 'Change', 'Reason'],
      empty: 'No events.',
      testid: 'audit-table',
      rows: shown.map((e) => ({
        props: { testid: 'audit-row', 'data-action': e.action, 'data-sequence': String(e.sequence) },
        cells: [String(e.sequence), timeElement(e.at), h('span', { testid: 'audit-actor' }, e.actor), e.action, e.adapter, e.version ?? '—',
          e.from || e.to ? `${e.from ?? '∅'} → ${e.to ?? '∅'}` : '—', h('span', { testid: 'audit-reason' }, e.reason ?? '')],
      })),
    }));
  };

  const refresh = async () => { await load(); draw(); };
  let debounce = null;
  adapterInput.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => refresh().catch((error) => ctx.fail('Loading the audit trail', error)), 300);
  });
  textInput.addEventListener('input', draw);
  await refresh();
  ctx.every(5000, refresh);
}
