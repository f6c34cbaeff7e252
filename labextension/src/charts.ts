/**
 * Small SVG line charts (the metric chart, the GPU chart, the sidebar's sparkline), drawn
 * with JupyterLab's theme colours through CSS classes, so they read in light and dark themes.
 * The geometry is pure (`extent`, `polyline`, `thin`, the series of the server's answers);
 * `LineChart` and `sparkline` only write the SVG.
 */
import type { IGpuSample, IMetrics } from './request';

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Points drawn per series at most: a long run keeps its shape and its last point. */
export const MAX_POINTS = 1000;

export type Point = [number, number];

export interface ISeries {
  name: string;
  points: Point[];
}

export interface IExtent {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}

/** The GPU chart's series: utilisation (%) of each GPU index over time (s from the first). */
export function gpuSeries(samples: IGpuSample[]): ISeries[] {
  const start = samples.length ? Math.min(...samples.map(s => s.at)) : 0;
  const byIndex = new Map<number, Point[]>();
  for (const s of samples) {
    if (s.utilization !== null) {
      const points = byIndex.get(s.index) ?? [];
      points.push([s.at - start, s.utilization]);
      byIndex.set(s.index, points);
    }
  }
  return [...byIndex.entries()]
    .sort(([a], [b]) => a - b)
    .map(([index, points]) => ({ name: `GPU ${index}`, points }));
}

/** The metric chart's series and the secondary ones (learning rates), each by name. */
export function metricSeries(metrics: IMetrics): [ISeries[], ISeries[]] {
  const secondary = new Set(metrics.secondary || []);
  const all = Object.entries(metrics.series).map(([name, points]) => ({ name, points }));
  return [all.filter(s => !secondary.has(s.name)), all.filter(s => secondary.has(s.name))];
}

/** The box around every finite point; a flat or single-point range is widened to draw. */
export function extent(series: ISeries[], yRange?: [number, number]): IExtent | null {
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (const { points } of series) {
    for (const [x, y] of points) {
      if (isFinite(x) && isFinite(y)) {
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x);
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y);
      }
    }
  }
  if (x0 === Infinity) {
    return null;
  }
  if (yRange) {
    [y0, y1] = yRange;
  }
  if (x1 === x0) {
    x1 = x0 + 1;
  }
  if (y1 === y0) {
    const pad = Math.abs(y0) * 0.1 || 1;
    [y0, y1] = [y0 - pad, y1 + pad];
  }
  return { x0, x1, y0, y1 };
}

/** Every `n`th point so that at most `max` remain, always with the last one. */
export function thin(points: Point[], max = MAX_POINTS): Point[] {
  if (points.length <= max) {
    return points;
  }
  const step = Math.ceil(points.length / max);
  const kept = points.filter((_, i) => i % step === 0);
  if (kept[kept.length - 1] !== points[points.length - 1]) {
    kept.push(points[points.length - 1]);
  }
  return kept;
}

/** The `points` attribute of an SVG polyline in a `width` x `height` box (y grows upwards). */
export function polyline(points: Point[], box: IExtent, width: number, height: number): string {
  const sx = width / (box.x1 - box.x0);
  const sy = height / (box.y1 - box.y0);
  return points
    .filter(([x, y]) => isFinite(x) && isFinite(y))
    .map(([x, y]) => `${round((x - box.x0) * sx)},${round(height - (y - box.y0) * sy)}`)
    .join(' ');
}

/** "0.0123", "1.23", "123", "1.2e+6": short labels for axes and legends. */
export function formatNumber(value: number): string {
  const size = Math.abs(value);
  if (size !== 0 && (size >= 1e5 || size < 1e-3)) {
    return value.toExponential(1);
  }
  return String(Number(value.toPrecision(3)));
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attributes: Record<string, string | number>,
  parent?: Element
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attributes)) {
    node.setAttribute(key, String(value));
  }
  parent?.appendChild(node);
  return node;
}

/** A sparkline of `values` (0-100 %) as an SVG element of its own. */
export function sparkline(values: number[], width = 60, height = 16): SVGSVGElement {
  const root = svg('svg', {
    class: 'gpu-magic-sparkline',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img'
  });
  const points = values.map((v, i) => [i, v] as Point);
  const box = extent([{ name: 'gpu', points }], [0, 100]);
  if (box) {
    // a stroke's width inside the box, so 0 % and 100 % are drawn whole
    const line = polyline(points, box, width, height - 2);
    svg('polyline', { points: line, transform: 'translate(0 1)' }, root);
  }
  const last = values[values.length - 1];
  const title = svg('title', {}, root);
  title.textContent = last === undefined ? 'no GPU samples' : `GPU ${Math.round(last)}%`;
  return root;
}

/** A chart with a title, y-axis bounds, one polyline per series and a legend of last values. */
export class LineChart {
  readonly node: HTMLDivElement;

  constructor(title: string, className: string) {
    this.node = document.createElement('div');
    this.node.className = `gpu-magic-chart ${className}`;
    const heading = document.createElement('div');
    heading.className = 'gpu-magic-chart-title';
    heading.textContent = title;
    this.node.appendChild(heading);
    this._svg = svg('svg', {
      class: 'gpu-magic-chart-plot',
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      preserveAspectRatio: 'none',
      role: 'img'
    });
    this.node.appendChild(this._svg);
    this._legend = document.createElement('div');
    this._legend.className = 'gpu-magic-chart-legend';
    this.node.appendChild(this._legend);
    this._empty = document.createElement('div');
    this._empty.className = 'gpu-magic-chart-empty';
    this.node.appendChild(this._empty);
  }

  /** Draw `series` (replacing what was drawn); `empty` is shown when there is nothing. */
  update(series: ISeries[], empty: string, yRange?: [number, number]): void {
    const drawn = series.filter(s => s.points.length > 0);
    const box = extent(drawn, yRange);
    this._svg.replaceChildren();
    this._legend.replaceChildren();
    this._empty.textContent = box ? '' : empty;
    this._empty.hidden = box !== null;
    this._svg.style.display = box ? '' : 'none';
    if (!box) {
      return;
    }
    for (const y of [box.y0, box.y1]) {
      const label = svg('text', { class: 'gpu-magic-chart-axis', x: 2 }, this._svg);
      label.setAttribute('y', String(y === box.y1 ? 10 : HEIGHT - 2));
      label.textContent = formatNumber(y);
    }
    drawn.forEach(({ name, points }, i) => {
      const line = svg('polyline', {
        class: `gpu-magic-series gpu-magic-series-${i % 6}`,
        points: polyline(thin(points), box, WIDTH, HEIGHT),
        'vector-effect': 'non-scaling-stroke'
      });
      line.dataset.series = name;
      line.dataset.count = String(points.length);
      this._svg.appendChild(line);
      const item = document.createElement('span');
      item.className = `gpu-magic-legend-item gpu-magic-series-${i % 6}`;
      const last = points[points.length - 1];
      item.textContent = `${name} ${formatNumber(last[1])}`;
      item.title = `${points.length} points; last at ${formatNumber(last[0])}`;
      this._legend.appendChild(item);
    });
  }

  private _svg: SVGSVGElement;
  private _legend: HTMLDivElement;
  private _empty: HTMLDivElement;
}

const WIDTH = 400;
const HEIGHT = 140;
