// Line charts drawn as inline SVG (no library): axes, ticks, dashed threshold lines, one line per
// series, a point per value with a tooltip, and a legend. Colours come from the stylesheet
// (classes series-0 … series-7), so the charts follow the page's theme.

import { h, s, number } from './dom.js';

const WIDTH = 640;
const HEIGHT = 220;
const MARGIN = { left: 56, right: 14, top: 12, bottom: 30 };

/** Round tick values covering [min, max]. */
function niceTicks(min, max, count = 5) {
  if (min === max) {
    const pad = Math.abs(min) * 0.1 || 1;
    min -= pad;
    max += pad;
  }
  const rough = (max - min) / Math.max(1, count - 1);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((candidate) => candidate >= rough) ?? rough;
  const first = Math.floor(min / step) * step;
  const ticks = [];
  for (let value = first; value <= max + step * 1e-9; value += step) ticks.push(Number(value.toPrecision(12)));
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

/**
 * @param {object} options
 * @param {string} options.title  Caption and accessible name.
 * @param {{name: string, points: {x: number, y: number|null}[]}[]} options.series
 * @param {(y: number) => string} [options.yFormat]
 * @param {(x: number) => string} [options.xFormat]
 * @param {{y: number, label: string}[]} [options.thresholds]
 * @param {number} [options.yMin] Lower end of the y axis (default: from the data).
 * @param {number} [options.yMax] Upper end of the y axis (default: from the data).
 * @param {string} [options.testid]
 */
export function lineChart({ title, series, yFormat = (y) => number(y), xFormat = (x) => String(x), thresholds = [], yMin, yMax, testid }) {
  const figure = h('figure', { class: 'chart', testid });
  figure.append(h('figcaption', null, title));

  const values = series.flatMap((line) => line.points.filter((p) => p.y !== null && p.y !== undefined && Number.isFinite(p.y)));
  if (values.length === 0) {
    figure.append(h('p', { class: 'muted chart-empty' }, 'No data yet.'));
    return figure;
  }

  const xs = values.map((p) => p.x);
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const ys = [...values.map((p) => p.y), ...thresholds.map((t) => t.y)];
  const ticks = niceTicks(yMin ?? Math.min(...ys), yMax ?? Math.max(...ys));
  const y0 = ticks[0];
  const y1 = ticks[ticks.length - 1];

  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const px = (x) => MARGIN.left + ((x - x0) / (x1 - x0)) * plotW;
  const py = (y) => MARGIN.top + (1 - (y - y0) / (y1 - y0)) * plotH;

  const svg = s('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-label': title, preserveAspectRatio: 'xMidYMid meet' });
  svg.append(s('title', null, title));

  const grid = s('g', { class: 'grid' });
  for (const tick of ticks) {
    const y = py(tick);
    grid.append(
      s('line', { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y, y2: y }),
      s('text', { x: MARGIN.left - 6, y: y + 4, 'text-anchor': 'end', class: 'tick' }, yFormat(tick)));
  }
  const xTickCount = Math.min(4, new Set(xs).size);
  for (let i = 0; i < xTickCount; i++) {
    const x = xTickCount === 1 ? xs[0] : x0 + ((x1 - x0) * i) / (xTickCount - 1);
    const anchor = i === 0 ? 'start' : i === xTickCount - 1 ? 'end' : 'middle';
    grid.append(s('text', { x: px(x), y: HEIGHT - 8, 'text-anchor': anchor, class: 'tick' }, xFormat(x)));
  }
  grid.append(s('line', { class: 'axis', x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom }));
  svg.append(grid);

  for (const threshold of thresholds) {
    const y = py(threshold.y);
    svg.append(s('g', { class: 'threshold' },
      s('line', { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y, y2: y }),
      s('text', { x: WIDTH - MARGIN.right - 4, y: y - 4, 'text-anchor': 'end', class: 'tick' }, threshold.label)));
  }

  series.forEach((line, index) => {
    const points = line.points.filter((p) => p.y !== null && p.y !== undefined && Number.isFinite(p.y));
    if (points.length === 0) return;
    const group = s('g', { class: `series series-${index % 8}` });
    group.append(s('polyline', { points: points.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ') }));
    for (const p of points) {
      group.append(s('circle', { cx: px(p.x).toFixed(1), cy: py(p.y).toFixed(1), r: 3 },
        s('title', null, `${line.name}: ${yFormat(p.y)} (${xFormat(p.x)})`)));
    }
    svg.append(group);
  });

  figure.append(h('div', { class: 'chart-canvas' }, svg));
  figure.append(h('ul', { class: 'legend' },
    series.map((line, index) => h('li', null, h('span', { class: `swatch series-${index % 8}`, 'aria-hidden': 'true' }), line.name))));
  return figure;
}

/** "13:04:05" for a millisecond timestamp. */
export function clockTime(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString('en-GB', { hour12: false });
}
