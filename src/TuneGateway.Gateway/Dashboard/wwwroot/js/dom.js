// Small DOM helpers: build elements without innerHTML (nothing from the API is ever parsed as markup).

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function apply(element, props) {
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === 'testid') {
      element.setAttribute('data-testid', value);
    } else if (name === 'class') {
      element.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
}

/** h('button', { class: 'button', onclick: fn, testid: 'x' }, 'Text', child, ...) */
export function h(tag, props, ...children) {
  const element = document.createElement(tag);
  apply(element, props);
  append(element, children);
  return element;
}

/** The same for SVG elements. */
export function s(tag, props, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  apply(element, props);
  append(element, children);
  return element;
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

/** A table with a caption, column headers and rows (each row: { cells, props }). */
export function table({ caption, columns, rows, empty = 'Nothing to show.', testid }) {
  const head = h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, c))));
  const body = h('tbody', null);
  if (rows.length === 0) {
    body.append(h('tr', null, h('td', { colspan: columns.length, class: 'empty' }, empty)));
  }
  for (const row of rows) {
    body.append(h('tr', row.props ?? null, row.cells.map((cell) => (cell instanceof HTMLTableCellElement ? cell : h('td', null, cell)))));
  }
  return h('div', { class: 'table-wrap' },
    h('table', { testid }, caption ? h('caption', null, caption) : null, head, body));
}

/** A <dl> of label/value pairs; values that are null are left out. */
export function facts(pairs, props) {
  const list = h('dl', { class: 'facts', ...props });
  for (const [label, value] of pairs) {
    if (value === null || value === undefined || value === '') continue;
    list.append(h('dt', null, label), h('dd', null, value));
  }
  return list;
}

export function badge(text, kind) {
  return h('span', { class: ['badge', kind ? `badge-${kind}` : null] }, text);
}

// ---- formatting ----

/** 0.9 → "90 %", 1 → "100 %" */
export function percent(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  const scaled = value * 100;
  const rounded = Number(scaled.toFixed(digits));
  return `${rounded} %`;
}

export function number(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  if (Number.isInteger(value)) return value.toLocaleString('en');
  return Number(value.toPrecision(digits)).toString();
}

const pad = (n) => String(n).padStart(2, '0');

/** An ISO time as local "YYYY-MM-DD HH:MM:SS". */
export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** An element for a time, machine-readable in its datetime attribute. */
export function timeElement(iso) {
  return iso ? h('time', { datetime: iso }, time(iso)) : '—';
}

/** Milliseconds between two ISO times as "1.2 s", "3 min 4 s", "2 h 5 min". */
export function duration(fromIso, toIso) {
  if (!fromIso || !toIso) return '—';
  return seconds((new Date(toIso) - new Date(fromIso)) / 1000);
}

export function seconds(total) {
  if (total === null || total === undefined || Number.isNaN(total)) return '—';
  if (total < 60) return `${Number(total.toFixed(total < 10 ? 1 : 0))} s`;
  const minutes = Math.floor(total / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(total % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** .NET TimeSpan JSON ("1.02:03:04.5" or "00:01:02") to seconds. */
export function timeSpanSeconds(value) {
  if (typeof value === 'number') return value;
  const match = /^(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)$/.exec(value ?? '');
  if (!match) return null;
  const [, days, hours, minutes, secs] = match;
  return (Number(days ?? 0) * 24 + Number(hours)) * 3600 + Number(minutes) * 60 + Number(secs);
}

export function shortHash(hash) {
  return hash ? h('code', { title: hash }, hash.slice(0, 12)) : '—';
}

/** "support-bot@v2" → the version part. */
export function versionOf(model) {
  const at = model.indexOf('@');
  return at < 0 ? model : model.slice(at + 1);
}
