/**
 * The charts' geometry and the series the job page draws from the server's answers.
 */
import {
  extent,
  formatNumber,
  gpuSeries,
  LineChart,
  metricSeries,
  polyline,
  sparkline,
  thin
} from '../charts';
import { IGpuSample } from '../request';

function sample(at: number, index: number, utilization: number | null): IGpuSample {
  return {
    at,
    index,
    uuid: `GPU-${index}`,
    utilization,
    memory_used: null,
    memory_total: null,
    temperature: null,
    power: null
  };
}

describe('extent and polyline', () => {
  it('maps points into the box with y growing upwards', () => {
    const box = extent([
      {
        name: 'loss',
        points: [
          [0, 0],
          [10, 2],
          [5, 1]
        ]
      }
    ]);
    expect(box).toEqual({ x0: 0, x1: 10, y0: 0, y1: 2 });
    expect(
      polyline(
        [
          [0, 0],
          [10, 2]
        ],
        box!,
        100,
        50
      )
    ).toBe('0,50 100,0');
  });

  it('widens a flat or single-point range and skips what is not finite', () => {
    expect(extent([{ name: 'a', points: [[3, 5]] }])).toEqual({ x0: 3, x1: 4, y0: 4.5, y1: 5.5 });
    expect(extent([{ name: 'a', points: [[0, NaN]] }])).toBeNull();
    expect(extent([{ name: 'a', points: [[0, 50]] }], [0, 100])).toEqual({
      x0: 0,
      x1: 1,
      y0: 0,
      y1: 100
    });
  });
});

describe('thin', () => {
  it('keeps at most about max points and always the last', () => {
    const points: [number, number][] = Array.from({ length: 10001 }, (_, i) => [i, i]);
    const kept = thin(points, 1000);
    expect(kept.length).toBeLessThanOrEqual(1001);
    expect(kept[0]).toEqual([0, 0]);
    expect(kept[kept.length - 1]).toEqual([10000, 10000]);
    expect(thin(points.slice(0, 5), 1000)).toHaveLength(5);
  });
});

describe('formatNumber', () => {
  it('writes short labels', () => {
    expect(formatNumber(0.5)).toBe('0.5');
    expect(formatNumber(1 / 3)).toBe('0.333');
    expect(formatNumber(123456)).toBe('1.2e+5');
    expect(formatNumber(0.0001)).toBe('1.0e-4');
    expect(formatNumber(0)).toBe('0');
  });
});

describe('the series of the server answers', () => {
  it('draws one utilisation line per GPU, in seconds from the first sample', () => {
    const series = gpuSeries([
      sample(100, 1, 40),
      sample(100, 0, 80),
      sample(101, 0, null),
      sample(102, 0, 90)
    ]);
    expect(series).toEqual([
      {
        name: 'GPU 0',
        points: [
          [0, 80],
          [2, 90]
        ]
      },
      { name: 'GPU 1', points: [[0, 40]] }
    ]);
    expect(gpuSeries([])).toEqual([]);
  });

  it('puts the secondary series (learning rates) apart', () => {
    const [primary, secondary] = metricSeries({
      series: { loss: [[1, 0.9]], lr: [[1, 1e-4]], val_loss: [[1, 1.1]] },
      secondary: ['lr']
    });
    expect(primary.map(s => s.name)).toEqual(['loss', 'val_loss']);
    expect(secondary.map(s => s.name)).toEqual(['lr']);
  });
});

describe('LineChart and sparkline', () => {
  it('draws a polyline per series with its point count, or says it is empty', () => {
    const chart = new LineChart('Metrics', 'm');
    chart.update([], 'No metrics yet.');
    expect(chart.node.querySelector('.gpu-magic-chart-empty')!.textContent).toBe('No metrics yet.');
    expect(chart.node.querySelectorAll('polyline')).toHaveLength(0);
    chart.update(
      [
        {
          name: 'loss',
          points: [
            [1, 1],
            [2, 0.5],
            [3, 0.25]
          ]
        }
      ],
      'No metrics yet.'
    );
    const line = chart.node.querySelector('polyline')!;
    expect(line.dataset.series).toBe('loss');
    expect(line.dataset.count).toBe('3');
    expect(chart.node.querySelector('.gpu-magic-legend-item')!.textContent).toBe('loss 0.25');
  });

  it('titles a sparkline with the last value', () => {
    const svg = sparkline([10, 50, 99.6]);
    expect(svg.querySelector('title')!.textContent).toBe('GPU 100%');
    expect(svg.querySelector('polyline')!.getAttribute('points')!.split(' ')).toHaveLength(3);
  });
});
