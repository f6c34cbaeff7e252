/**
 * JobsModel, the shared poller: `finished` fires once per job that ends between two polls,
 * concurrent `refresh()` calls share one request, `refreshInterval` is clamped, and polling
 * runs only while a consumer asks for it. `listJobs` is mocked; timers are jest's fake ones.
 */
import {
  ACTIVE_STATES,
  ALL_STATES,
  IJobFinished,
  isActive,
  JobsModel,
  TERMINAL_STATES
} from '../model';
import { IJob, IJobList, listJobs } from '../request';

jest.mock('../request', () => ({ listJobs: jest.fn(), cancelJob: jest.fn() }));

const mockListJobs = listJobs as jest.MockedFunction<typeof listJobs>;

function job(id: string, status: string): IJob {
  return {
    id,
    name: null,
    status,
    cluster: null,
    created_at: null,
    started_at: null,
    ended_at: null,
    exit_code: null,
    error: null,
    gpus: null,
    progress: null
  };
}

function answer(...jobs: IJob[]): Promise<IJobList> {
  return Promise.resolve({ jobs, cursor: null });
}

/** A listJobs answer that resolves only when `resolve` is called. */
function deferred(): { promise: Promise<IJobList>; resolve: (value: IJobList) => void } {
  let resolve!: (value: IJobList) => void;
  const promise = new Promise<IJobList>(r => (resolve = r));
  return { promise, resolve };
}

beforeEach(() => {
  mockListJobs.mockReset();
});

describe('states', () => {
  it('isActive is true exactly for the active states', () => {
    for (const state of ACTIVE_STATES) {
      expect(isActive(state)).toBe(true);
    }
    for (const state of TERMINAL_STATES) {
      expect(isActive(state)).toBe(false);
    }
    expect(isActive('bogus')).toBe(false);
    expect(isActive('')).toBe(false);
  });

  it('sorts every known state into one list, in the order of a job life', () => {
    // gpu_magic.models.JobStatus; a new state must go into one list or the other
    expect(ACTIVE_STATES).toEqual(['pending', 'uploading', 'queued', 'running']);
    expect(TERMINAL_STATES).toEqual(['completed', 'failed', 'cancelled', 'timeout', 'lost']);
    expect(ALL_STATES).toEqual([...ACTIVE_STATES, ...TERMINAL_STATES]);
  });
});

describe('JobsModel.refresh', () => {
  it('stores and emits the fetched jobs', async () => {
    const model = new JobsModel();
    const changed: IJob[][] = [];
    model.changed.connect((_, jobs) => changed.push(jobs));
    expect(model.loaded).toBe(false);
    mockListJobs.mockReturnValueOnce(answer(job('a', 'running'), job('b', 'queued')));

    await model.refresh();

    expect(mockListJobs).toHaveBeenCalledTimes(1);
    expect(model.loaded).toBe(true);
    expect(model.error).toBeNull();
    expect(model.jobs.map(j => j.id)).toEqual(['a', 'b']);
    expect(changed).toHaveLength(1);
    expect(changed[0].map(j => j.status)).toEqual(['running', 'queued']);
    model.dispose();
  });

  it('emits finished once for a job that goes from active to terminal between two polls', async () => {
    const model = new JobsModel();
    const finished: IJobFinished[] = [];
    model.finished.connect((_, item) => finished.push(item));
    mockListJobs
      .mockReturnValueOnce(answer(job('a', 'running'), job('b', 'queued')))
      .mockReturnValueOnce(answer(job('a', 'completed'), job('b', 'running')))
      .mockReturnValueOnce(answer(job('a', 'completed'), job('b', 'running')));

    await model.refresh();
    expect(finished).toEqual([]);
    await model.refresh();
    expect(finished).toHaveLength(1);
    expect(finished[0].job.id).toBe('a');
    expect(finished[0].job.status).toBe('completed');
    expect(finished[0].previous).toBe('running');
    await model.refresh(); // still completed: no second notification
    expect(finished).toHaveLength(1);
    model.dispose();
  });

  it('does not emit finished for a job first seen in a terminal state', async () => {
    const model = new JobsModel();
    const finished: IJobFinished[] = [];
    model.finished.connect((_, item) => finished.push(item));
    mockListJobs
      .mockReturnValueOnce(answer(job('old', 'failed')))
      .mockReturnValueOnce(answer(job('old', 'failed'), job('new', 'cancelled')));

    await model.refresh();
    await model.refresh();

    expect(finished).toEqual([]);
    expect(model.jobs).toHaveLength(2);
    model.dispose();
  });

  it('emits finished with the state seen last before the end (not the first one)', async () => {
    const model = new JobsModel();
    const finished: IJobFinished[] = [];
    model.finished.connect((_, item) => finished.push(item));
    mockListJobs
      .mockReturnValueOnce(answer(job('a', 'queued')))
      .mockReturnValueOnce(answer(job('a', 'running')))
      .mockReturnValueOnce(answer(job('a', 'timeout')));

    await model.refresh();
    await model.refresh();
    expect(finished).toEqual([]); // queued -> running is no end
    await model.refresh();

    expect(finished.map(f => [f.job.id, f.previous, f.job.status])).toEqual([
      ['a', 'running', 'timeout']
    ]);
    model.dispose();
  });

  it('shares one request between concurrent calls', async () => {
    const model = new JobsModel();
    const pending = deferred();
    mockListJobs.mockReturnValueOnce(pending.promise);

    const first = model.refresh();
    const second = model.refresh();

    expect(second).toBe(first);
    expect(mockListJobs).toHaveBeenCalledTimes(1);
    pending.resolve({ jobs: [job('a', 'running')], cursor: null });
    await Promise.all([first, second]);
    expect(model.jobs.map(j => j.id)).toEqual(['a']);

    // once it has settled, the next call makes a request of its own
    mockListJobs.mockReturnValueOnce(answer());
    const third = model.refresh();
    expect(third).not.toBe(first);
    await third;
    expect(mockListJobs).toHaveBeenCalledTimes(2);
    expect(model.jobs).toEqual([]);
    model.dispose();
  });

  it('reports a failed fetch and keeps the last jobs', async () => {
    const model = new JobsModel();
    const failures: Error[] = [];
    model.failed.connect((_, error) => failures.push(error));
    const error = new Error('server down');
    mockListJobs
      .mockReturnValueOnce(answer(job('a', 'running')))
      .mockReturnValueOnce(Promise.reject(error))
      .mockReturnValueOnce(answer(job('a', 'running')));

    await model.refresh();
    await expect(model.refresh()).resolves.toBeUndefined();

    expect(model.error).toBe(error);
    expect(failures).toEqual([error]);
    expect(model.jobs.map(j => j.id)).toEqual(['a']);
    expect(model.loaded).toBe(true);

    await model.refresh(); // a later success clears the error
    expect(model.error).toBeNull();
    model.dispose();
  });
});

describe('JobsModel.refreshInterval', () => {
  it('clamps to at least 500 ms and falls back to 2000 for a non-number', () => {
    const model = new JobsModel(1000);
    expect(model.refreshInterval).toBe(1000);
    model.refreshInterval = 100;
    expect(model.refreshInterval).toBe(500);
    model.refreshInterval = -1;
    expect(model.refreshInterval).toBe(500);
    model.refreshInterval = 750;
    expect(model.refreshInterval).toBe(750);
    model.refreshInterval = NaN;
    expect(model.refreshInterval).toBe(2000);
    model.refreshInterval = '3000' as unknown as number; // a setting may arrive as a string
    expect(model.refreshInterval).toBe(3000);
    model.dispose();
  });
});

describe('JobsModel polling', () => {
  beforeEach(() => {
    jest.useFakeTimers();
    mockListJobs.mockImplementation(() => answer(job('a', 'running')));
  });

  afterEach(() => {
    jest.useRealTimers();
  });

  it('does not poll until a consumer asks', async () => {
    const model = new JobsModel(1000);
    await jest.advanceTimersByTimeAsync(10000);
    expect(mockListJobs).not.toHaveBeenCalled();
    model.dispose();
  });

  it('polls at once, then every refreshInterval, while a consumer asks', async () => {
    const model = new JobsModel(1000);
    model.setActive('sidebar', true);
    await jest.advanceTimersByTimeAsync(0);
    expect(mockListJobs).toHaveBeenCalledTimes(1);
    await jest.advanceTimersByTimeAsync(999);
    expect(mockListJobs).toHaveBeenCalledTimes(1);
    await jest.advanceTimersByTimeAsync(1);
    expect(mockListJobs).toHaveBeenCalledTimes(2);
    await jest.advanceTimersByTimeAsync(3000);
    expect(mockListJobs).toHaveBeenCalledTimes(5);
    model.dispose();
  });

  it('keeps one poller for several consumers and stops when the last one leaves', async () => {
    const model = new JobsModel(1000);
    model.setActive('sidebar', true);
    model.setActive('statusbar', true);
    model.setActive('statusbar', true); // asking twice changes nothing
    await jest.advanceTimersByTimeAsync(2000);
    expect(mockListJobs).toHaveBeenCalledTimes(3); // at 0, 1000, 2000: one poller, not two

    model.setActive('sidebar', false);
    await jest.advanceTimersByTimeAsync(1000);
    expect(mockListJobs).toHaveBeenCalledTimes(4); // the status bar still asks

    model.setActive('statusbar', false);
    await jest.advanceTimersByTimeAsync(10000);
    expect(mockListJobs).toHaveBeenCalledTimes(4);
    expect(jest.getTimerCount()).toBe(0);

    model.setActive('sidebar', true); // asking again polls again, at once
    await jest.advanceTimersByTimeAsync(0);
    expect(mockListJobs).toHaveBeenCalledTimes(5);
    model.dispose();
  });

  it('applies a new refreshInterval from the moment it is set', async () => {
    const model = new JobsModel(1000);
    model.setActive('sidebar', true);
    await jest.advanceTimersByTimeAsync(0);
    expect(mockListJobs).toHaveBeenCalledTimes(1);

    model.refreshInterval = 5000;
    await jest.advanceTimersByTimeAsync(4999);
    expect(mockListJobs).toHaveBeenCalledTimes(1);
    await jest.advanceTimersByTimeAsync(1);
    expect(mockListJobs).toHaveBeenCalledTimes(2);
    await jest.advanceTimersByTimeAsync(5000);
    expect(mockListJobs).toHaveBeenCalledTimes(3);
    model.dispose();
  });

  it('stops polling when disposed', async () => {
    const model = new JobsModel(1000);
    model.setActive('sidebar', true);
    await jest.advanceTimersByTimeAsync(0);
    model.dispose();
    await jest.advanceTimersByTimeAsync(10000);
    expect(mockListJobs).toHaveBeenCalledTimes(1);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('does not start a second poll while one is still in flight', async () => {
    const model = new JobsModel(1000);
    const pending = deferred();
    mockListJobs.mockReturnValueOnce(pending.promise);
    model.setActive('sidebar', true);
    await jest.advanceTimersByTimeAsync(5000); // the first answer has not come yet
    expect(mockListJobs).toHaveBeenCalledTimes(1);

    pending.resolve({ jobs: [], cursor: null });
    await jest.advanceTimersByTimeAsync(0);
    expect(mockListJobs).toHaveBeenCalledTimes(1);
    await jest.advanceTimersByTimeAsync(1000); // the next one comes an interval after the answer
    expect(mockListJobs).toHaveBeenCalledTimes(2);
    model.dispose();
  });
});
