// Adapters overview: one row per adapter with its production version, canary and routing.

import { api } from '../api.js';
import { h, clear, table, badge, percent } from '../dom.js';

export function routing(alias) {
  if (!alias?.arms?.length) return '—';
  return h('ul', { class: 'arms' }, alias.arms.map((arm) =>
    h('li', null, h('code', null, arm.model), ' ', percent(arm.weight), arm.arm ? h('span', { class: 'muted' }, ` (${arm.arm})`) : null)));
}

export async function render(container, ctx) {
  const heading = h('h1', null, 'Adapters');
  const tiles = h('div', { class: 'tiles' });
  const body = h('div');
  container.append(heading, tiles, body);

  const draw = async () => {
    const [adapters, pending] = await Promise.all([
      api('/admin/adapters', { signal: ctx.signal }),
      api('/admin/approvals', { signal: ctx.signal }),
    ]);
    const list = adapters.data;
    clear(tiles).append(
      tile('Adapters', list.length, 'count-adapters'),
      tile('In production', list.filter((a) => a.production).length, 'count-production'),
      tile('In canary', list.filter((a) => a.canary).length, 'count-canary'),
      tile('Versions', list.reduce((sum, a) => sum + a.versions, 0), 'count-versions'),
      tile('Pending approvals', pending.data.length, 'count-pending', pending.data.length ? '#/approvals' : null));
    clear(body).append(table({
      caption: 'Every adapter name clients can call, with the version serving it and any canary.',
      columns: ['Adapter', 'Production', 'Canary', 'Versions', 'Routing'],
      empty: 'No adapters are registered yet.',
      testid: 'adapters-table',
      rows: list.map((a) => ({
        props: { 'data-adapter': a.adapter, testid: 'adapter-row' },
        cells: [
          h('a', { href: `#/adapters/${encodeURIComponent(a.adapter)}`, testid: 'adapter-link' }, a.adapter),
          a.production ? h('code', null, a.production) : badge('none', 'warn'),
          a.canary ? badge(a.canary, 'canary') : '—',
          String(a.versions),
          routing(a.alias),
        ],
      })),
    }));
  };
  await draw();
  ctx.every(5000, draw);
}

function tile(label, value, testid, href) {
  const content = [h('span', { class: 'tile-value', testid }, String(value)), h('span', { class: 'tile-label' }, label)];
  return href ? h('a', { class: 'tile', href }, content) : h('div', { class: 'tile' }, content);
}
