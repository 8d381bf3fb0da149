// The worker's task records as one append-only journal (<dir>/tasks.jsonl, journal.ts): puts and
// deletes are appended in batches, replayed at load, and compacted when the dead lines pile up.
import { join } from 'node:path';
import { Journal } from './journal.ts';
import type { TaskRecord, TaskRecords } from './task-records.ts';

export class JournalTaskRecords implements TaskRecords {
  private readonly journal: Journal<TaskRecord>;

  constructor(dir: string) {
    this.journal = new Journal<TaskRecord>(join(dir, 'tasks.jsonl'), (r) => r?.task?.id);
  }

  async load(): Promise<TaskRecord[]> {
    return [...(await this.journal.load()).values()];
  }

  put(rec: TaskRecord): Promise<void> {
    return this.journal.put(rec);
  }

  delete(taskId: string): Promise<void> {
    return this.journal.delete(taskId);
  }

  close(): Promise<void> {
    return this.journal.close();
  }
}
